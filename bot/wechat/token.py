"""One access_token shared by every thread, worker process and machine.

Each fetch from WeChat invalidates the previous token, so workers that fetch independently keep
breaking each other (the classic 40001 storm). The token therefore lives in the shared store, and a
short lock taken with ``store.add`` lets exactly one caller fetch while the others poll for its result.
A process-local memo saves a store round trip per API call; ``refresh()`` still goes through the store
so a token rejected in one process is replaced once for all of them.

A store that fails (a full disk, a Redis outage) does not take the token with it: the process fetches one itself
and uses it from its memo until it expires, so voice keeps working where text (which needs no token) already
does. One warning line says so; the store is tried again for the next token. With ``stable_token`` (the default)
such a fetch disturbs no other process; with the classic endpoint it may, which beats having no token at all.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

from bot.store import Store, StoreError

Fetch = Callable[[], tuple[str, int]]
log = logging.getLogger("bot.wechat")

_SECRET_FIELD = re.compile(
    r"""((?:app)?secret|access_token|password)(["']?\s*[=:]\s*["']?)([^&"'\s,;}]+)""", re.IGNORECASE
)


class TokenError(Exception):
    """No access token could be obtained; the message never contains the token or the AppSecret."""

    def __init__(self, message: str, errcode: int | None = None) -> None:
        super().__init__(message)
        self.errcode = errcode


@dataclass(frozen=True)
class _Record:
    """What the store holds; ``fetched_at`` tells a fresh token from the stale one it may equal."""

    token: str
    expires_at: float  # wall clock, shared by every process
    fetched_at: float

    def live(self) -> bool:
        return time.time() < self.expires_at

    def dump(self) -> str:
        return json.dumps({"token": self.token, "expires_at": self.expires_at, "fetched_at": self.fetched_at})

    @classmethod
    def load(cls, raw: str | None) -> _Record | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            record = cls(str(data["token"]), float(data["expires_at"]), float(data["fetched_at"]))
        except (ValueError, TypeError, KeyError):
            return None  # foreign or corrupt value: treat as absent, the next fetch overwrites it
        return record if record.token and record.live() else None


def _accept_any(record: _Record) -> bool:
    return True


class AccessTokenManager:
    """Single-flight access-token cache over a :class:`Store` (see the module docstring for why)."""

    def __init__(
        self,
        store: Store,
        fetch: Fetch,
        *,
        key: str = "access_token",
        refresh_margin_s: float = 300,
        lock_ttl_s: float = 10,
        wait_timeout_s: float = 10,
        poll_s: float = 0.02,
        redact: Iterable[str] = (),
    ) -> None:
        self.store = store
        self._fetch = fetch
        self.key = key
        self.lock_key = f"{key}:lock"
        self.refresh_margin_s = refresh_margin_s
        self.lock_ttl_s = lock_ttl_s
        self.wait_timeout_s = wait_timeout_s
        self.poll_s = poll_s
        self._redact = [s for s in redact if s]
        self.fetch_count = 0
        self._memo: _Record | None = None
        self._lock = threading.Lock()  # one caller per process talks to the store; the rest reuse its memo
        self._failure: tuple[float, str, int | None] | None = None

    # -- public ------------------------------------------------------------------------------------
    def get(self) -> str:
        """The current token, fetching it (once across all processes) when missing or expired."""
        memo = self._memo
        if memo is not None and memo.live():
            return memo.token
        return self._obtain(_accept_any, drop_rejected=False)

    def refresh(self, stale: str) -> str:
        """Replace ``stale`` after WeChat rejected it (40001/40014/42001); fetches at most once overall.

        A token stored after this call began counts as fresh even if it equals ``stale`` (stable_token
        may hand the same string back), so concurrent refreshers never fetch one after another.
        """
        started = time.time()

        def fresh(record: _Record) -> bool:
            return record.token != stale or record.fetched_at >= started

        return self._obtain(fresh, drop_rejected=True)

    # -- single flight -----------------------------------------------------------------------------
    def _obtain(self, accept: Callable[[_Record], bool], drop_rejected: bool) -> str:
        """The memo or stored token if ``accept`` takes it; otherwise fetch or wait for whoever does."""
        started = time.monotonic()
        deadline = started + self.wait_timeout_s
        with self._turn(started):
            memo = self._memo
            if memo is not None and memo.live() and accept(memo):
                return memo.token
            self._memo = None
            try:
                raw = self.store.get(self.key)
                record = _Record.load(raw)
                if record is not None and accept(record):
                    self._memo = record
                    return record.token
                if drop_rejected and raw is not None:
                    self.store.compare_and_delete(self.key, raw)  # still the rejected token: drop it
                return self._fetch_or_wait(accept, deadline)
            except StoreError as exc:
                return self._without_store(exc)

    def _without_store(self, exc: StoreError) -> str:
        """The store cannot be used: fetch a token for this process alone (its memo) rather than fail."""
        log.warning("access token store failed (%s): fetching a token for this process, kept in memory until it "
                    "expires", exc)
        record = self._fetch_record()
        self._memo = record
        return record.token

    @contextmanager
    def _turn(self, started: float) -> Iterator[None]:
        """The process-local lock; callers queued behind a failed fetch share its error, not retry it."""
        if not self._lock.acquire(timeout=max(0.0, self.wait_timeout_s)):
            raise TokenError(f"timed out after {self.wait_timeout_s:g}s waiting for the access token")
        try:
            failure = self._failure
            if failure is not None and failure[0] >= started:
                raise TokenError(failure[1], failure[2])
            yield
        finally:
            self._lock.release()

    def _fetch_or_wait(self, accept: Callable[[_Record], bool], deadline: float) -> str:
        owner = f"{os.getpid()}:{uuid.uuid4().hex}"
        while True:
            if self.store.add(self.lock_key, owner, ttl=self.lock_ttl_s):
                try:
                    # Re-check: the previous holder may have stored a token just before releasing.
                    record = _Record.load(self.store.get(self.key))
                    if record is None or not accept(record):
                        record = self._fetch_and_store()
                finally:
                    self._release(owner)
                self._memo = record
                return record.token
            if time.monotonic() >= deadline:
                raise TokenError(
                    f"timed out after {self.wait_timeout_s:g}s waiting for another worker to fetch "
                    "the access token"
                )
            time.sleep(self.poll_s)
            record = _Record.load(self.store.get(self.key))
            if record is not None and accept(record):
                self._memo = record
                return record.token

    def _release(self, owner: str) -> None:
        """Give the fetch lock back; a store that fails here lets it expire (``lock_ttl_s``) instead."""
        try:
            self.store.compare_and_delete(self.lock_key, owner)
        except StoreError as exc:
            log.warning("access token store failed releasing the fetch lock (%s); it expires in %gs", exc,
                        self.lock_ttl_s)

    def _fetch_and_store(self) -> _Record:
        """Fetch and share the token; one the store cannot keep is still this process's (its memo)."""
        record = self._fetch_record()
        try:
            self.store.set(self.key, record.dump(), ttl=record.expires_at - record.fetched_at)
        except StoreError as exc:
            log.warning("access token store failed (%s): the new token is used by this process only, kept in memory "
                        "until it expires", exc)
        return record

    def _fetch_record(self) -> _Record:
        """One fetch from WeChat, checked; its lifetime ends ``refresh_margin_s`` early."""
        self.fetch_count += 1
        failure: tuple[str, int | None] | None = None
        try:
            token, expires_in = self._fetch()
        except Exception as exc:  # noqa: BLE001 - any fetch failure becomes one clean, secret-free error
            reason = f"access token fetch failed: {type(exc).__name__}: {self._clean(str(exc))}"
            failure = (reason, getattr(exc, "errcode", None))
        if failure is not None:
            self._fail(*failure)  # outside the except block: no __context__ that may quote the secret
        if not isinstance(token, str) or not token or not isinstance(expires_in, (int, float)) \
                or expires_in <= 0:
            self._fail("access token fetch returned an invalid answer (empty token or expires_in <= 0)")
        now = time.time()
        ttl = max(expires_in - self.refresh_margin_s, min(expires_in / 2, 60.0))
        return _Record(token, now + ttl, now)

    def _fail(self, message: str, errcode: int | None = None) -> NoReturn:
        self._failure = (time.monotonic(), message, errcode)
        raise TokenError(message, errcode)

    def _clean(self, text: str) -> str:
        text = _SECRET_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
        for secret in self._redact:
            text = text.replace(secret, "***")
        return text
