"""The one small key/value interface every stateful part of the bot relies on.

Dedupe keys, delivery leases, the shared access token and sessions all need the same few atomic
operations, so each backend implements just these and the exactly-once guarantees are tested once per
backend instead of once per feature.
"""
from __future__ import annotations

import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class StoreError(Exception):
    """A backend failed or is unreachable; the message never contains a password from the URL."""


_fork_lock = threading.Lock()


def _renew_fork_lock() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()  # a parent's thread may have held it at the fork


os.register_at_fork(after_in_child=_renew_fork_lock)


def fork_lock() -> threading.Lock:
    """What a forked child's first users of a store take to agree on the child's own locks and queues (a parent's
    thread may have held them at the fork, and that thread does not exist in the child)."""
    return _fork_lock


def check_ttl(ttl: float | None) -> float | None:
    """Reject zero/negative TTLs up front so every backend agrees (Redis would error, a dict would not)."""
    if ttl is None:
        return None
    ttl = float(ttl)
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
    return ttl


def redact_url(url: str) -> str:
    """The URL with any password (userinfo or ``?password=``) replaced, safe for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url.partition(':')[0]}://<unparseable url>"
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{hostport}"
    if "pass" in query.lower():
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if "pass" in k.lower() else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing secret; urlunsplit would also drop the '//' of sqlite:////abs paths
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


IndexOp = tuple[str, str, "float | None"]
"""``(index, member, score)``: put ``member`` into ``index`` with ``score``, or remove it (score None).

Indexes are sorted sets of members (keys of records) that delivery scans without a request: the records
due for a look (``open``) and each user's answers kept for pickup. They have no expiry of their own; the
record is the truth, and an index entry whose record is gone is dropped by whoever finds it."""


class Store(ABC):
    """Atomic string key/value operations with optional per-key expiry (TTL in seconds), and sorted indexes
    of members changed in the same atomic operation as a record."""

    def __init__(self, prefix: str = "wvb:") -> None:
        self.prefix = prefix

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _ix(self, index: str) -> str:
        """An index's full name: apart from every record key."""
        return f"{self.prefix}ix:{index}"

    @abstractmethod
    def get(self, key: str) -> str | None:
        """The live value, or None when absent or expired."""

    @abstractmethod
    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Unconditional write; ``ttl=None`` means the key never expires (any old TTL is dropped)."""

    @abstractmethod
    def add(self, key: str, value: str, ttl: float | None = None, *, index: Sequence[IndexOp] = ()) -> bool:
        """Set only if absent or expired; True if this call set it (the dedupe/lock primitive). The ``index``
        changes are applied in the same atomic operation, only when it set the key."""

    def add_peeking(self, key: str, value: str, ttl: float | None = None, *, index: Sequence[IndexOp] = (),
                    peek: str) -> tuple[bool, bool]:
        """``add``, and, when it set the key, whether index ``peek`` has any member: a delivery claims a
        message and learns whether its user has answers waiting. A backend may do both in one round trip."""
        if not self.add(key, value, ttl, index=index):
            return False, False
        return True, bool(self.index_range(peek, limit=1))

    def get_peeking(self, key: str, peek: str) -> tuple[str | None, bool]:
        """``get``, and whether index ``peek`` has any member: a fast message reads its record and its user's
        pickup index before anything is written. A backend does both in one read round."""
        return self.get(key), bool(self.index_range(peek, limit=1))

    @abstractmethod
    def add_if_empty(self, key: str, value: str, ttl: float | None = None, *, empty: str) -> bool:
        """``add``, only while index ``empty`` has no member, in one atomic operation: a fast message that read
        nothing first records its answer unless its user has answers kept for pickup. False when the key is
        live or the index has a member (the caller looks which)."""

    @abstractmethod
    def compare_and_set(
        self, key: str, expected: str | None, value: str, ttl: float | None = None, *,
        index: Sequence[IndexOp] = (),
    ) -> bool:
        """Replace the value only if it still equals ``expected`` (None: must be absent); ``index`` changes
        are applied in the same atomic operation, only when it replaced the value."""

    @abstractmethod
    def index_range(self, index: str, until: float = math.inf, limit: int = 100) -> list[tuple[str, float]]:
        """Members of ``index`` with a score up to ``until``, lowest score first: ``(member, score)``."""

    @abstractmethod
    def index_discard(self, index: str, member: str, score: float | None = None) -> bool:
        """Remove ``member`` (only while its score is still ``score``, when given); True if removed."""

    @abstractmethod
    def compare_and_delete(self, key: str, expected: str) -> bool:
        """Delete only if the value still equals ``expected`` (release a lock/lease we own)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the key if present."""

    @abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to an integer value (absent counts as 0); ``ttl`` applies only on creation."""

    @abstractmethod
    def ttl(self, key: str) -> float | None:
        """Remaining seconds to live, or None when the key is absent or never expires."""

    @abstractmethod
    def ping(self) -> None:
        """Check the backend is reachable; raise StoreError with a clear message when it is not."""

    def close(self) -> None:  # noqa: B027 - optional: the memory store holds no connection
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


T = TypeVar("T")
Entry = tuple[str, float | None]  # (value, absolute expiry in the backend's clock or None)


class LockingStore(Store):
    """Shared semantics for backends that run plain reads and writes under a lock (memory, SQLite).

    A subclass provides how a write runs atomically (``_write``) and a few primitives; every public operation
    is written once here, as a function of the write's time, so the in-process and the multi-process backends
    share one meaning (SQLite replaces the hot ones by single statements: ``tests/test_store.py`` holds every
    backend to the same cases).
    """

    purge_every = 512  # writes between sweeps of expired keys

    def __init__(self, prefix: str = "wvb:") -> None:
        super().__init__(prefix)
        self._writes = 0

    # -- what a backend provides -------------------------------------------------------------------
    @abstractmethod
    def _write(self, op: Callable[[float], T]) -> T:
        """Run ``op(now)`` as one atomic write (call ``_writing()`` for ``now``) and return its result."""

    @abstractmethod
    def _read(self, op: Callable[[], T]) -> T:
        """Run ``op()``, a read that sees one consistent state."""

    @abstractmethod
    def _load(self, key: str, now: float) -> Entry | None:
        """The entry for a full key if it has not expired at ``now``."""

    @abstractmethod
    def _save(self, key: str, value: str, expires_at: float | None) -> None:
        """Insert or replace the entry for a full key."""

    @abstractmethod
    def _drop(self, key: str) -> None:
        """Remove a full key."""

    @abstractmethod
    def _purge(self, now: float) -> None:
        """Remove every entry that expired before ``now``."""

    @abstractmethod
    def _index_put(self, index: str, member: str, score: float | None) -> None:
        """Insert, move (a new score) or, with ``score=None``, remove a member of a full index name."""

    @abstractmethod
    def _index_score(self, index: str, member: str) -> float | None:
        """The member's score, or None when it is not in the index."""

    @abstractmethod
    def _index_range(self, index: str, until: float, limit: int) -> list[tuple[str, float]]:
        """Members with a score up to ``until``, lowest first."""

    def _now(self) -> float:
        """The clock expiries are measured in; wall time so other processes agree."""
        return time.time()

    # -- shared implementation ---------------------------------------------------------------------
    def _writing(self) -> float:
        """Call first thing in a write: the time of the write, and a sweep now and then."""
        now = self._now()
        self._writes += 1
        if self._writes % self.purge_every == 0:
            self._purge(now)
        return now

    @staticmethod
    def _deadline(now: float, ttl: float | None) -> float | None:
        return None if ttl is None else now + ttl

    def get(self, key: str) -> str | None:
        full = self._k(key)
        entry = self._read(lambda: self._load(full, self._now()))
        return None if entry is None else entry[0]

    def get_peeking(self, key: str, peek: str) -> tuple[str | None, bool]:
        full, name = self._k(key), self._ix(peek)

        def op() -> tuple[str | None, bool]:
            entry = self._load(full, self._now())
            return (None if entry is None else entry[0]), bool(self._index_range(name, math.inf, 1))
        return self._read(op)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        ttl, full = check_ttl(ttl), self._k(key)
        self._write(lambda now: self._save(full, value, self._deadline(now, ttl)))

    def add(self, key: str, value: str, ttl: float | None = None, *, index: Sequence[IndexOp] = ()) -> bool:
        ttl, full = check_ttl(ttl), self._k(key)

        def op(now: float) -> bool:
            if self._load(full, now) is not None:
                return False
            self._save(full, value, self._deadline(now, ttl))
            self._apply(index)
            return True
        return self._write(op)

    def add_if_empty(self, key: str, value: str, ttl: float | None = None, *, empty: str) -> bool:
        ttl, full, name = check_ttl(ttl), self._k(key), self._ix(empty)

        def op(now: float) -> bool:
            if self._load(full, now) is not None or self._index_range(name, math.inf, 1):
                return False
            self._save(full, value, self._deadline(now, ttl))
            return True
        return self._write(op)

    def compare_and_set(
        self, key: str, expected: str | None, value: str, ttl: float | None = None, *,
        index: Sequence[IndexOp] = (),
    ) -> bool:
        if expected is None:
            return self.add(key, value, ttl, index=index)
        ttl, full = check_ttl(ttl), self._k(key)

        def op(now: float) -> bool:
            entry = self._load(full, now)
            if entry is None or entry[0] != expected:
                return False
            self._save(full, value, self._deadline(now, ttl))
            self._apply(index)
            return True
        return self._write(op)

    def _apply(self, index: Sequence[IndexOp]) -> None:
        for name, member, score in index:
            self._index_put(self._ix(name), member, score)

    def index_range(self, index: str, until: float = math.inf, limit: int = 100) -> list[tuple[str, float]]:
        name = self._ix(index)
        return self._read(lambda: self._index_range(name, until, limit))

    def index_discard(self, index: str, member: str, score: float | None = None) -> bool:
        name = self._ix(index)

        def op(now: float) -> bool:
            current = self._index_score(name, member)
            if current is None or (score is not None and current != score):
                return False
            self._index_put(name, member, None)
            return True
        return self._write(op)

    def compare_and_delete(self, key: str, expected: str) -> bool:
        full = self._k(key)

        def op(now: float) -> bool:
            entry = self._load(full, now)
            if entry is None or entry[0] != expected:
                return False
            self._drop(full)
            return True
        return self._write(op)

    def delete(self, key: str) -> None:
        full = self._k(key)
        self._write(lambda now: self._drop(full))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ttl, full = check_ttl(ttl), self._k(key)

        def op(now: float) -> int:
            entry = self._load(full, now)
            if entry is None:
                total, expires_at = int(amount), self._deadline(now, ttl)
            else:
                try:
                    total = int(entry[0]) + int(amount)
                except ValueError:
                    raise StoreError(f"incr: value at {key!r} is not an integer") from None
                expires_at = entry[1]
            self._save(full, str(total), expires_at)
            return total
        return self._write(op)

    def ttl(self, key: str) -> float | None:
        full = self._k(key)

        def op() -> float | None:
            now = self._now()
            entry = self._load(full, now)
            return None if entry is None or entry[1] is None else max(0.0, entry[1] - now)
        return self._read(op)
