"""What the recognizer chain and the synthesizer chain share: a typed failure, "try each in order until one
works", and loading third-party members by module path.

Both chains are the same idea (a member that fails or runs out of time hands over to the next; a member's
bug never loses the message), so the loop and the plug-in rules live here once.
"""
from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

log = logging.getLogger("bot.voice")

T = TypeVar("T")


class ChainError(Exception):
    """A chain member could not do its job; ``reason`` is a short code for logs and metrics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class Attempt(Generic[T]):
    """The first member's result (``value``, ``source``), or none of them, with each failure's reason."""

    __slots__ = ("value", "source", "reasons")

    def __init__(self, value: T | None, source: str | None, reasons: list[str]) -> None:
        self.value, self.source, self.reasons = value, source, reasons

    @property
    def error(self) -> str | None:
        """``"openai:timeout,mine:bad_audio"``; None when a member succeeded or there was none to try."""
        return None if self.source is not None else ",".join(self.reasons) or None


def first_success(members: Sequence[Any], attempt: Callable[[Any], T], *, kind: str, msg_id: str,
                  record: Callable[[str, str, float], None], quiet: frozenset[str] = frozenset(),
                  clock: Callable[[], float] = time.perf_counter) -> Attempt[T]:
    """``attempt(member)`` for each member in order until one returns; a :class:`ChainError` or any other
    exception hands over to the next. ``record(name, outcome, seconds)`` counts each try (outcome ``"ok"``, the
    reason, or ``"crashed"``; seconds by ``clock``); failures are logged on "bot.voice" (at DEBUG for ``quiet``
    reasons)."""
    reasons: list[str] = []
    for member in members:
        started = clock()
        try:
            value = attempt(member)
        except ChainError as exc:
            elapsed = clock() - started
            reasons.append(f"{member.name}:{exc.reason}")
            record(member.name, exc.reason, elapsed)
            log.log(logging.DEBUG if exc.reason in quiet else logging.WARNING,
                    "voice %s=%s msg_id=%s failed reason=%s detail=%s ms=%.1f", kind, member.name, msg_id,
                    exc.reason, exc.detail, elapsed * 1000)
            continue
        except Exception as exc:  # a third-party member's bug must not lose the message
            reasons.append(f"{member.name}:crashed")
            record(member.name, "crashed", clock() - started)
            log.exception("voice %s=%s msg_id=%s crashed: %s", kind, member.name, msg_id, type(exc).__name__)
            continue
        record(member.name, "ok", clock() - started)
        return Attempt(value, member.name, reasons)
    return Attempt(None, None, reasons)


def load_member(spec: str, config: Any, *, key: str, kind: str, method: str, builtins: Sequence[str]) -> Any:
    """``module:attribute``: an object with ``name`` and ``method``, or a factory (a class too) called with the
    config that returns one. Errors are one-line ``ConfigError``s naming ``key`` (e.g. ``[voice] recognizers``)."""
    from bot.config import ConfigError
    if ":" not in spec:
        raise ConfigError(f"{key}: unknown {kind} {spec!r} (built-in: {', '.join(builtins)}; or 'module:attribute')")
    module_name, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{key}: cannot load {spec!r} ({exc})") from None
    # A class has the method too: it is a factory (called with the config), not an instance.
    is_instance = hasattr(obj, method) and not isinstance(obj, type)
    member = obj if is_instance or not callable(obj) else obj(config)
    if not hasattr(member, method):
        raise ConfigError(f"{key}: {spec!r} gave {type(member).__name__}, which has no {method}()")
    member.name = getattr(member, "name", spec)
    return member
