"""Typed values from TOML tables: a frozen dataclass built from a table, every error one line naming the key
(``[section] key: expected …, got …``). Used for the bot's sections, the accounts and the sections handler
packages declare.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from bot.config.schema import ConfigError

# Fields of Config that are not TOML sections (set by the loader).
NOT_SECTIONS = ("base_dir", "intents", "sections", "account", "accounts")


def describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(str(a).lower() if isinstance(a, bool) else repr(a) for a in typing.get_args(tp))
    if origin is types.UnionType:  # ``X | None``: TOML has no null, so a value given must be an X
        return describe(typing.get_args(tp)[0])
    if origin is list:
        item = typing.get_args(tp)[0]
        plural = {str: "strings", int: "integers", float: "numbers", bool: "true or false values"}.get(item)
        return f"a list of {plural or describe(item) + ' values'}"
    if origin is dict:
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(tp: Any, value: Any, where: str, section: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is types.UnionType:
        return coerce(typing.get_args(tp)[0], value, where, section)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return build(tp, value, section)
    if origin is list and isinstance(value, list):
        item = typing.get_args(tp)[0]
        return [coerce(item, v, f"{where}[{i}]", section) for i, v in enumerate(value)]
    if origin is Literal:  # by type too: TOML's 1 is not true
        ok = any(type(value) is type(a) and value == a for a in typing.get_args(tp))
    elif origin is dict:  # a free-form table (e.g. [llm] extra): passed on as it is
        ok = isinstance(value, dict)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = origin is None and isinstance(value, tp)
    if not ok:
        raise ConfigError(f"{where}: expected {describe(tp)}, got {value!r}")
    return float(value) if tp is float else value


def build(cls: type, raw: dict[str, Any], section: str, label: str | None = None) -> Any:
    """Build dataclass ``cls`` from a TOML table, naming ``[section] key`` (or ``label key``) in every error."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in NOT_SECTIONS}

    def where(name: str) -> str:
        if label:
            return f"{label} {name}"
        return f"[{section}] {name}" if section else f"[{name}]"

    for name in raw:
        if name not in fields:
            if not section and not label:  # the top level holds sections (and [[intents]])
                raise ConfigError(f"[{name}]: unknown section (expected one of: {', '.join(fields)}, [[intents]])")
            raise ConfigError(f"{where(name)}: unknown key (expected one of: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{section}.{name}" if section else name
        if name in raw:
            kwargs[name] = coerce(hints[name], raw[name], where(name), sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if dataclasses.is_dataclass(hints[name]):
                kwargs[name] = build(hints[name], {}, sub)
            else:
                raise ConfigError(f"{where(name)}: missing; expected {describe(hints[name])}")
    return cls(**kwargs)
