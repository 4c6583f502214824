"""Config sections that handler packages declare: ``[llm]``, ``[forward]`` and any installed package's own.

A package ships a :class:`Section` (its schema, a frozen dataclass whose every key has a default, and the rules
that can refuse it) under the entry point group ``wechat_voicebot.config``, named after the section::

    [project.entry-points."wechat_voicebot.config"]
    weather = "voicebot_weather.config:SECTION"

The loader builds ``[weather]`` from the file with the same one-line errors as the bot's own sections
(``[weather] city: expected a string, got 3``), runs the section's ``check``, and hands the value to handlers as
``ctx.config.weather``. A section nobody declares is still an error. Keys whose field has ``repr=False`` are
secrets: the log filter and ``check`` hide their values.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from bot.config.collisions import import_hint
from bot.config.schema import ConfigError

if TYPE_CHECKING:
    from bot.config.schema import Config

GROUP = "wechat_voicebot.config"


@dataclass(frozen=True)
class Section:
    """What a package declares for its ``[name]`` table.

    ``schema``: a frozen dataclass (nested dataclasses are sub-tables, ``[name.sub]``); every key needs a default,
    so that a bot that does not use the package needs no table. ``check(value, config)`` raises
    :class:`ConfigError` (``[name] key: …``) for what the types cannot say, e.g. a key required once the
    package's router is listed. ``env`` maps environment variables to keys that they override (secrets)."""

    schema: type
    check: Callable[[Any, Config], None] | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((ep.name, ep.value) for ep in entry_points(group=GROUP)))


def declared_sections() -> dict[str, Section]:
    """The sections installed packages declare, by name (loaded once per process and set of packages)."""
    return _load(_installed())


@functools.lru_cache(maxsize=4)
def _load(found: tuple[tuple[str, str], ...]) -> dict[str, Section]:
    sections = {}
    for name, value in found:
        ep = next(ep for ep in entry_points(group=GROUP) if ep.name == name and ep.value == value)
        try:
            section = ep.load()
        except Exception as exc:  # someone's package may raise anything on import
            raise ConfigError(f"[{name}]: the section's declaration {value!r} cannot be loaded "
                              f"({type(exc).__name__}: {exc}){import_hint(value.partition(':')[0])}") from None
        if not isinstance(section, Section) or not dataclasses.is_dataclass(section.schema):
            raise ConfigError(f"[{name}]: {value!r} declares {type(section).__name__}, expected a "
                              "bot.config.sections.Section with a dataclass schema")
        sections[name] = section
    return sections


def refresh() -> None:
    """Look for declarations again (after installing a package in this process, as tests do)."""
    _installed.cache_clear()


def secrets_of(value: Any) -> Iterator[str]:
    """The values of the ``repr=False`` fields of a section (nested tables included): what logs must hide."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if dataclasses.is_dataclass(item):
            yield from secrets_of(item)
        elif not f.repr and isinstance(item, str) and item:
            yield item
