"""Conversation state: ``ctx.session``, a JSON dict per user kept in the store between messages.

A two-turn dialog ("打开灯" → "哪个房间？" → "客厅") needs to remember the first turn when the second one
arrives, possibly in another worker process or on another machine: so the session lives in the configured
store (``session:<openid>``, expiring ``[session] ttl_s`` after it last changed), not in memory.

It is written only when a handler changed it (the JSON before and after the dispatch differ), deleted when
emptied, and with compare-and-set: when two messages of one user are answered at once, the first change
wins and the other is logged and dropped, never a stale session written over a newer one — unless the handler
said how to redo its change (``ctx.session_merge``): then it is applied to the newer session and saved again
(handlers.llm appends its turn to a history another message extended meanwhile). A store that fails costs the
session, never the answer.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from bot.core.context import Context
from bot.store import Store, StoreError

log = logging.getLogger("bot.session")

KEY = "session:{openid}"
MERGE_ATTEMPTS = 5  # re-reads of a session that keeps changing under a merge before its change is dropped


@dataclass(frozen=True)
class Snapshot:
    """What was in the store (``raw``, for compare-and-set) and its canonical JSON (to detect a change)."""

    raw: str | None
    canonical: str


def dumps(session: dict[str, Any]) -> str:
    """The canonical JSON of a session (sorted keys), so equal dicts compare equal as text."""
    return json.dumps(session, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class Sessions:
    """Loads ``ctx.session`` before the routers run and saves it afterwards if it changed."""

    def __init__(self, store: Store | Callable[[], Store | None] | None, ttl_s: float, *,
                 shown: Callable[[str], str | None] = lambda openid: openid) -> None:
        self._store, self.ttl_s = store, ttl_s
        self.shown = shown  # how an openid appears in log lines: hashed, as [logging] hash_openid says
        self._fallback: Store | None = None

    @property
    def store(self) -> Store:
        """The configured store; a private in-memory one for a webhook built without services."""
        store = self._store() if callable(self._store) else self._store
        if store is not None:
            return store
        if self._fallback is None:
            from bot.store.memory import MemoryStore
            self._fallback = MemoryStore()
        return self._fallback

    def load(self, openid: str) -> tuple[dict[str, Any], Snapshot | None]:
        """The user's session (empty when none) and what ``save`` compares with (None: the store failed,
        so nothing must be written over what could not be read)."""
        key = KEY.format(openid=openid)
        try:
            raw = self.store.get(key)
        except StoreError as exc:
            log.warning("session load failed openid=%s: %s; answering without the session", self.shown(openid), exc)
            return {}, None
        if raw is None:
            return {}, Snapshot(None, dumps({}))
        try:
            session = json.loads(raw)
            if not isinstance(session, dict):
                raise ValueError(f"a JSON {type(session).__name__}, not an object")
        except ValueError as exc:
            log.warning("session of openid=%s is unreadable (%s); starting afresh", self.shown(openid), exc)
            session = {}
        return session, Snapshot(raw, dumps(session))

    def save(self, openid: str, session: dict[str, Any], snapshot: Snapshot | None, msg_id: str = "",
             merge: Callable[[dict[str, Any]], None] | None = None) -> bool:
        """Write ``session`` if it differs from ``snapshot`` (delete it when empty); True if written. When another
        message saved first, ``merge`` (if given) redoes this message's change on what that one saved."""
        written = self._write(openid, session, snapshot, msg_id)
        if written is False and merge is not None:
            written = self._merge(openid, merge, msg_id)
        elif written is False:
            log.warning("session not saved msg_id=%s openid=%s: another message of this user changed it "
                        "meanwhile (its change wins)", msg_id, self.shown(openid))
        return bool(written)

    def _write(self, openid: str, session: dict[str, Any], snapshot: Snapshot | None, msg_id: str) -> bool | None:
        """One compare-and-set: True written, False lost to another message, None nothing to write (or cannot)."""
        if snapshot is None:
            return None
        raw = snapshot.raw
        try:
            after = dumps(session)
        except (TypeError, ValueError) as exc:
            log.error("session not saved msg_id=%s openid=%s: not JSON (%s)", msg_id, self.shown(openid), exc)
            return None
        if after == snapshot.canonical:
            return None
        key = KEY.format(openid=openid)
        try:
            if session:
                return self.store.compare_and_set(key, raw, after, ttl=self.ttl_s)
            return raw is None or self.store.compare_and_delete(key, raw)
        except StoreError as exc:
            log.error("session not saved msg_id=%s openid=%s: %s", msg_id, self.shown(openid), exc)
            return None

    def _merge(self, openid: str, merge: Callable[[dict[str, Any]], None], msg_id: str) -> bool:
        """Redo this message's change on the session saved meanwhile and compare-and-set again (a few times)."""
        for _ in range(MERGE_ATTEMPTS):
            current, snapshot = self.load(openid)
            if snapshot is None:
                return False
            try:
                merge(current)
            except Exception:  # a handler's merge function: its failure costs its change, never the answer
                log.exception("session not saved msg_id=%s openid=%s: its merge function raised", msg_id,
                              self.shown(openid))
                return False
            written = self._write(openid, current, snapshot, msg_id)
            if written:
                log.info("session merged msg_id=%s openid=%s: another message of this user changed it meanwhile, "
                         "and this message's change was redone on it", msg_id, self.shown(openid))
            if written is not False:  # True, or nothing left to write (its change is there) or an error (logged)
                return bool(written)
        log.warning("session not saved msg_id=%s openid=%s: it kept changing while this message merged its change",
                    msg_id, self.shown(openid))
        return False

    def bound(self, ctx: Context) -> Bound:
        """``ctx.session`` loadable during the block (lazily), saved after it (not when the block raised)."""
        return Bound(self, ctx)


class Bound:
    """:meth:`Sessions.bound`'s block (a plain class: a generator context manager costs more per message)."""

    def __init__(self, sessions: Sessions, ctx: Context) -> None:
        self.sessions, self.ctx = sessions, ctx
        self.loaded: list[Snapshot | None] = []
        self.detached = False

    def __enter__(self) -> Bound:
        if self.ctx.openid:
            self.ctx.session_loader = self._load
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None and not self.detached:
            self.save()

    def detach(self) -> AbstractContextManager[None]:
        """Keep the session open past this block (a streamed answer still writing): the block this returns
        saves it instead."""
        self.detached = True
        return self._rest()

    @contextmanager
    def _rest(self) -> Iterator[None]:
        yield
        self.save()

    def _load(self) -> dict[str, Any]:
        session, snapshot = self.sessions.load(self.ctx.openid)
        self.loaded.append(snapshot)
        return session

    def save(self) -> None:
        ctx = self.ctx
        if self.loaded:  # saved only when some handler looked at it (and changed it)
            self.sessions.save(ctx.openid, ctx.session, self.loaded[0], ctx.msg_id, ctx.session_merge)
