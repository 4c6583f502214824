"""Routers: the public extension API.

A router is an ordered list of handlers plus middleware and error handlers. Routers compose (a router
includes others) and the configured ones run in order; the first handler that answers something other
than ``None`` wins. Fallbacks run only after every router's regular handlers declined, so the first
router's fallback never hides the second router's intents.
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from bot.core.context import Context, Reply
from bot.core.normalize import fuzzy_ratio

log = logging.getLogger("bot.router")

Handler = Callable[..., Reply]
Matcher = Callable[[Context], "dict[str, Any] | None"]
Next = Callable[[Context], Reply]
Middleware = Callable[[Next, Context], Reply]
ErrorHandler = Callable[[Context, Exception], Reply]
CheckResult = tuple[bool, str, str]  # (ready, name, detail): one line of ``python -m bot check``
ReadinessCheck = Callable[[Any], "list[CheckResult]"]  # called with the Config

TEXT_TYPES = ("text", "voice")


@dataclass
class Route:
    """A handler and the test that decides whether it sees a message (kwargs on a match, else None).

    ``keywords`` and ``patterns`` are what ``keyword()`` and ``intent()`` match, kept so that start-up can see
    which words a route is written for (bot/core/intents.py warns when an ``[[intents]]`` table hides them)."""

    matcher: Matcher
    handler: Handler
    description: str
    keywords: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()

    def __call__(self, ctx: Context) -> Reply:
        kwargs = self.matcher(ctx)
        return None if kwargs is None else self.handler(ctx, **kwargs)


class HandlerError(Exception):
    """A handler raised; carries the router whose error handlers get the first say."""

    def __init__(self, router: Router, route: Route, exc: Exception) -> None:
        super().__init__(f"{route.description} in router {router.name!r} raised {type(exc).__name__}: {exc}")
        self.router, self.route, self.original = router, route, exc


class Router:
    """Handlers for one concern (lights, echo, FAQ…), registered with decorators."""

    def __init__(self, name: str = "router") -> None:
        self.name = name
        self.routes: list[Route] = []
        self.fallbacks: list[Route] = []
        self.children: list[Router] = []
        self.middlewares: list[Middleware] = []
        self.error_handlers: list[ErrorHandler] = []
        self.checks: list[ReadinessCheck] = []

    def __repr__(self) -> str:
        return f"Router({self.name!r}, {len(self.routes)} routes)"

    # -- registration ---------------------------------------------------------------------------
    def add(self, matcher: Matcher, handler: Handler, description: str = "", *, fallback: bool = False,
            keywords: Iterable[str] = (), patterns: Iterable[re.Pattern[str]] = ()) -> Handler:
        route = Route(matcher, handler, description or getattr(handler, "__name__", "handler"), tuple(keywords),
                      tuple(patterns))
        (self.fallbacks if fallback else self.routes).append(route)
        return handler

    def _decorate(self, matcher: Matcher, what: str, *, fallback: bool = False, keywords: Iterable[str] = (),
                  patterns: Iterable[re.Pattern[str]] = ()) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            return self.add(matcher, handler, f"{what} {handler.__name__}", fallback=fallback, keywords=keywords,
                            patterns=patterns)
        return register

    def intent(self, pattern: str | re.Pattern[str], *, flags: int = 0) -> Callable[[Handler], Handler]:
        """Regex searched in ``ctx.text`` (text or transcript); named groups become keyword arguments."""
        regex = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        return self._decorate(regex_matcher(regex), f"intent {regex.pattern!r}", patterns=(regex,))

    def keyword(self, *words: str, exact: bool = False, fuzzy: float | None = None) -> Callable[[Handler], Handler]:
        """Any of ``words`` contained in the text (or equal to it, with ``exact=True``).

        ``fuzzy`` (0–1) also accepts a word whose similarity to the best window of the text reaches it, for
        characters a recognizer mishears; None uses ``[matching] fuzzy_threshold``, 0 turns it off.
        """
        return self._decorate(keyword_matcher(words, exact=exact, fuzzy=fuzzy), f"keyword {words!r}", keywords=words)

    def _type(self, msg_type: str, handler: Handler | None) -> Any:
        msg_type = msg_type.lower()  # ctx.type is WeChat's MsgType, lowercased
        register = self._decorate(lambda ctx: {} if ctx.type == msg_type else None, msg_type)
        return register(handler) if handler is not None else register

    def text(self, handler: Handler | None = None) -> Any:
        """Every text message. Usable as ``@router.text`` or ``@router.text()``."""
        return self._type("text", handler)

    def voice(self, handler: Handler | None = None) -> Any:
        """Every voice message (``ctx.text`` holds the transcript, or None when none was made)."""
        return self._type("voice", handler)

    def message(self, msg_type: str) -> Callable[[Handler], Handler]:
        """Any other message type: ``image``, ``location``, ``link``, ``video``…"""
        decorator: Callable[[Handler], Handler] = self._type(msg_type, None)
        return decorator

    def event(self, name: str) -> Callable[[Handler], Handler]:
        """An event by name, any case: the ``Event`` WeChat sends (``subscribe``, ``CLICK``, ``SCAN``,
        ``subscribe_msg_popup_event``, ``PUBLISHJOBFINISH``…) or wechatpy's name for it (``subscribe_scan``).

        ``subscribe`` also matches subscriptions through a QR code: on the wire they are ``subscribe`` too.
        """
        name = name.lower()

        def match(ctx: Context) -> dict[str, Any] | None:
            if ctx.type != "event" and getattr(ctx.message, "type", None) != "event":  # wechatpy's device events
                return None
            parsed = getattr(ctx.message, "event", None)
            return {} if ctx.event == name or (isinstance(parsed, str) and parsed.lower() == name) else None
        return self._decorate(match, f"event {name}")

    def fallback(self, handler: Handler) -> Handler:
        """Answers what no regular handler of any router answered."""
        return self.add(lambda ctx: {}, handler, f"fallback {handler.__name__}", fallback=True)

    def middleware(self, fn: Middleware) -> Middleware:
        """``fn(next, ctx)``: call ``next(ctx)`` to go on, or return a reply to short-circuit."""
        self.middlewares.append(fn)
        return fn

    def before(self, fn: Callable[[Context], Reply]) -> Callable[[Context], Reply]:
        """Runs before this router's handlers; a non-None return answers the message."""
        def mw(call_next: Next, ctx: Context) -> Reply:
            early = fn(ctx)
            return early if early is not None else call_next(ctx)
        self.middlewares.append(mw)
        return fn

    def after(self, fn: Callable[[Context, Reply], Reply]) -> Callable[[Context, Reply], Reply]:
        """Sees (and may replace) this router's answer."""
        self.middlewares.append(lambda call_next, ctx: fn(ctx, call_next(ctx)))
        return fn

    def error(self, fn: ErrorHandler) -> ErrorHandler:
        """``fn(ctx, exc)`` for exceptions raised by this router's handlers (or its children's).

        Return a reply to answer the user, or None to let the including router (and finally the
        configured apology) answer.
        """
        self.error_handlers.append(fn)
        return fn

    def check(self, fn: ReadinessCheck) -> ReadinessCheck:
        """``fn(config) -> [(ok, name, detail), ...]``: lines ``python -m bot check`` prints for this router, so a
        handler that needs a service (an LLM, a database) says before deployment whether it is reachable. Keep
        secrets out of ``detail`` (the configured ones are redacted anyway)."""
        self.checks.append(fn)
        return fn

    def include(self, *routers: Router) -> Router:
        for r in routers:
            if r is self or r in self.walk():
                raise ValueError(f"router {r.name!r} is already included")
            self.children.append(r)
        return self

    def walk(self) -> Iterator[Router]:
        yield self
        for child in self.children:
            yield from child.walk()

    # -- dispatch -------------------------------------------------------------------------------
    def dispatch(self, ctx: Context) -> Reply:
        """The first non-None answer of the regular handlers, else of the fallbacks.

        This router's own middleware wraps the whole dispatch once. An included router's middleware wraps
        each phase in which it has something to try (its regular handlers, then its fallbacks).
        """
        def both(ctx: Context) -> Reply:
            answer = self._phase(ctx, fallback=False)
            return answer if answer is not None else self._phase(ctx, fallback=True)
        return self._wrapped(both, ctx)

    def _phase(self, ctx: Context, *, fallback: bool) -> Reply:
        for route in self.fallbacks if fallback else self.routes:
            try:
                answer = route(ctx)
            except Exception as exc:
                raise HandlerError(self, route, exc) from exc
            if answer is not None:
                ctx.answered_by = f"{route.description} in router {self.name!r}"  # for a log line about it
                return answer
        for child in self.children:
            if child._has_routes(fallback):
                answer = child._wrapped(functools.partial(child._phase, fallback=fallback), ctx)
                if answer is not None:
                    return answer
        return None

    def _has_routes(self, fallback: bool) -> bool:
        """Whether this router or one it includes has fallbacks (``fallback``) or regular routes."""
        if self.fallbacks if fallback else self.routes:
            return True
        for child in self.children:
            if child._has_routes(fallback):
                return True
        return False

    def _wrapped(self, inner: Next, ctx: Context) -> Reply:
        """``inner`` inside this router's middleware; its error handlers see what its handlers raise."""
        if not self.middlewares and not self.error_handlers:
            return inner(ctx)  # nothing to wrap it in, nobody to ask about an error: it propagates as it is
        chain = inner
        for mw in reversed(self.middlewares):
            chain = _bind(mw, chain)
        try:
            return chain(ctx)
        except HandlerError as err:
            answer = self._on_error(ctx, err)
            if answer is None:
                raise
            return answer

    def _on_error(self, ctx: Context, err: HandlerError) -> Reply:
        """This router's error handlers get a say before the routers that include it."""
        for fn in self.error_handlers:
            try:
                answer = fn(ctx, err.original)
            except Exception:
                log.exception("error handler of router %r raised msg_id=%s", self.name, ctx.msg_id)
                continue
            if answer is not None:
                return answer
        return None


def regex_matcher(regex: re.Pattern[str]) -> Matcher:
    """Search ``ctx.text``; the named groups are the handler's keyword arguments."""
    def match(ctx: Context) -> dict[str, Any] | None:
        found = regex.search(ctx.text) if ctx.text else None
        return None if found is None else found.groupdict()
    return match


def keyword_matcher(words: Iterable[str], *, exact: bool = False, fuzzy: float | None = None) -> Matcher:
    """Any word contained in (``exact``: equal to) ``ctx.text``, case-insensitively, or close enough to it."""
    lowered = tuple(w.lower() for w in words)
    if not lowered or not all(lowered):
        raise ValueError("keyword() needs at least one word, and no empty ones")
    if fuzzy is not None and not 0 <= fuzzy <= 1:
        raise ValueError(f"fuzzy: expected a threshold from 0 to 1, got {fuzzy!r}")

    def match(ctx: Context) -> dict[str, Any] | None:
        text = (ctx.text or "").strip().lower()
        if not text:
            return None
        if text in lowered if exact else any(w in text for w in lowered):
            return {}
        threshold = fuzzy if fuzzy is not None else getattr(getattr(ctx.config, "matching", None),
                                                            "fuzzy_threshold", 0.0)
        if threshold and any(_similarity(w, text, exact) >= threshold for w in lowered):
            return {}
        return None
    return match


def _similarity(word: str, text: str, exact: bool) -> float:
    return SequenceMatcher(None, word, text, autojunk=False).ratio() if exact else fuzzy_ratio(word, text)


def _bind(mw: Middleware, call_next: Next) -> Next:
    return lambda ctx: mw(call_next, ctx)


def combine(routers: Iterable[Router], name: str = "app") -> Router:
    """One root router over the configured ones, in priority order."""
    return Router(name).include(*routers)
