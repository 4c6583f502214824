"""No-code intents: ``[[intents]]`` tables in the config become a router, so a config file alone makes a bot.

::

    [[intents]]
    name = "weather"
    patterns = ['(?P<city>\\S+?)(?:的)?天气']
    reply = "{city}今天晴，20 到 26 度。"

Each intent matches a regex (searched in the normalized ``ctx.text``; named groups fill the ``reply``
template) or a keyword (contained in the text, or close to it with ``fuzzy``). ``{text}`` is the whole text.
Higher ``priority`` is tried first, equal priorities in file order. The router runs before the
``[handlers] routers`` (bot/core/loading.py). Everything is checked at start-up, naming ``[[intents]][i] key``.
"""
from __future__ import annotations

import logging
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

from bot.config import Config, ConfigError, IntentConfig
from bot.core.context import Context
from bot.core.normalize import for_matching
from bot.core.router import Matcher, Route, Router, keyword_matcher, regex_matcher

log = logging.getLogger("bot.intents")
_warned: set[str] = set()  # per process: a gunicorn worker inherits what its master already said
_LITERAL = re.compile(r"[^\\.^$*+?{}\[\]|()]+")


def check_intents(intents: Sequence[IntentConfig]) -> None:
    """Raise :class:`ConfigError` for the first intent that could not work, naming ``[[intents]][i] key``."""
    names: dict[str, int] = {}
    for i, intent in enumerate(intents):
        where = f"[[intents]][{i}]"
        if not intent.name.strip():
            raise ConfigError(f"{where} name: expected a non-empty string")
        if intent.name in names:
            raise ConfigError(f"{where} name: {intent.name!r} is already the name of [[intents]][{names[intent.name]}]")
        names[intent.name] = i
        if not intent.patterns and not intent.keywords:
            raise ConfigError(f"{where} patterns: expected at least one pattern or keyword (set patterns, keywords or both)")
        groups = [_compile(p, f"{where} patterns[{j}]").groupindex.keys() for j, p in enumerate(intent.patterns)]
        for j, word in enumerate(intent.keywords):
            if not word.strip():
                raise ConfigError(f"{where} keywords[{j}]: expected a non-empty string")
        if intent.fuzzy is not None and not 0 <= intent.fuzzy <= 1:
            raise ConfigError(f"{where} fuzzy: expected a number from 0 to 1, got {intent.fuzzy:g}")
        if not intent.reply.strip():
            raise ConfigError(f"{where} reply: expected a non-empty template")
        for field in _placeholders(intent.reply, f"{where} reply"):
            if field == "text":
                continue
            if intent.keywords:
                raise ConfigError(f"{where} reply: placeholder {{{field}}} cannot be filled when a keyword matches "
                                  "(only {text} can); move the keywords to another intent")
            missing = [j for j, named in enumerate(groups) if field not in named]
            if missing:
                raise ConfigError(f"{where} reply: placeholder {{{field}}} is not a named group (?P<{field}>...) "
                                  f"of patterns[{missing[0]}]")


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where}: not a valid regular expression ({exc})") from None


def _placeholders(template: str, where: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: bad template ({exc}; write {{{{ and }}}} for literal braces)") from None
    fields = []
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ConfigError(f"{where}: placeholder {{{field}{'!' + conversion if conversion else ''}"
                              f"{':' + spec if spec else ''}}} must be a plain name such as {{text}} or {{city}}")
        fields.append(field)
    return fields


def intents_router(intents: Sequence[IntentConfig], name: str = "intents") -> Router | None:
    """A router answering the intents, highest priority first; None when there are none.

    Raises :class:`ConfigError` naming ``[[intents]][i] key`` for an intent that could not work."""
    check_intents(intents)
    if not intents:
        return None
    router = Router(name)
    for intent in sorted(intents, key=lambda it: -it.priority):  # sorted() is stable: file order within a priority
        router.add(_matcher(intent), _responder(intent.reply), f"[[intents]] {intent.name!r}",
                   keywords=intent.keywords, patterns=[re.compile(p) for p in intent.patterns])
    return router


def _matcher(intent: IntentConfig) -> Matcher:
    matchers = [regex_matcher(re.compile(p)) for p in intent.patterns]
    if intent.keywords:
        matchers.append(keyword_matcher(intent.keywords, fuzzy=intent.fuzzy))

    def match(ctx: Context) -> dict[str, Any] | None:
        for m in matchers:
            found = m(ctx)
            if found is not None:
                return found
        return None
    return match


def _responder(template: str) -> Callable[..., str | None]:
    def reply(ctx: Context, **groups: str | None) -> str | None:
        values = {k: v or "" for k, v in groups.items()}
        return template.format_map({**values, "text": ctx.text or ""}).strip() or None
    return reply


def warn_shadowed(intents: Sequence[IntentConfig], routers: Sequence[tuple[str, Router]], config: Config) -> list[str]:
    """Log (once per process) a warning line for each route an intent hides; see :func:`shadowed`."""
    lines = shadowed(intents, routers, config)
    for line in lines:
        if line not in _warned:
            _warned.add(line)
            log.warning(line)
    return lines


def shadowed(intents: Sequence[IntentConfig], routers: Sequence[tuple[str, Router]], config: Config) -> list[str]:
    """One line for each route of the configured ``(spec, router)`` pairs whose words an intent answers first
    (intents run before every router), where that can be seen: a keyword the intent matches, a pattern that is a
    plain word the intent matches, or the very pattern of an intent. Other regexes may overlap unseen."""
    built = [(intent, _matcher(intent)) for intent in sorted(intents, key=lambda it: -it.priority)]
    lines = []
    for spec, router in routers:
        for route in (route for r in router.walk() for route in r.routes):
            hit = _first_hit(built, route, config)
            if hit is not None:
                intent, what = hit
                lines.append(f"[[intents]] {intent.name!r} answers {what} before {route.description} of {spec}, "
                             "which never sees it (intents run before [handlers] routers): remove or narrow the "
                             "intent in the config")
    return lines


def _first_hit(built: list[tuple[IntentConfig, Matcher]], route: Route, config: Config) -> tuple[IntentConfig, str] | None:
    words = list(route.keywords)
    for pattern in route.patterns:  # ^帮助$ or (?i)help: a plain word once anchors and flags are off
        bare = re.sub(r"^(\(\?[a-z]+\))?\^?|\$$", "", pattern.pattern)
        if _LITERAL.fullmatch(bare):
            words.append(bare)
    for word in words:
        probe = Context(message=None, text=for_matching(word, config.matching), config=config)
        for intent, matcher in built:
            if matcher(probe) is not None:
                return intent, repr(word)
    own = {p.pattern for p in route.patterns}
    for intent, _ in built:
        same = next((p for p in intent.patterns if p in own), None)
        if same is not None:
            return intent, f"the same pattern {same!r}"
    return None
