"""The one small key/value interface every stateful part of the bot relies on.

Dedupe keys, delivery leases, the shared access token and sessions all need the same few atomic
operations, so each backend implements just these and the exactly-once guarantees are tested once per
backend instead of once per feature.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class StoreError(Exception):
    """A backend failed or is unreachable; the message never contains a password from the URL."""


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

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Entry = tuple[str, float | None]  # (value, absolute expiry in the backend's clock or None)


class LockingStore(Store):
    """Shared semantics for backends that can lock around plain reads and writes (memory, SQLite).

    A subclass provides a lock/transaction and three primitives; every public operation is written once
    here, so the in-process and the multi-process backends cannot drift apart.
    """

    purge_every = 512  # writes between sweeps of expired keys

    def __init__(self, prefix: str = "wvb:") -> None:
        super().__init__(prefix)
        self._writes = 0

    # -- what a backend provides -------------------------------------------------------------------
    @abstractmethod
    def _locked(self, write: bool) -> AbstractContextManager[object]:
        """Hold the lock (write=True: an exclusive transaction) for the duration of the block."""

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
        """Call first thing inside ``_locked(write=True)``: the time of the write, and a sweep now and then.
        (Not a generator context manager: wrapping the lock in one cost a few microseconds per operation.)"""
        now = self._now()
        self._writes += 1
        if self._writes % self.purge_every == 0:
            self._purge(now)
        return now

    @staticmethod
    def _deadline(now: float, ttl: float | None) -> float | None:
        ttl = check_ttl(ttl)
        return None if ttl is None else now + ttl

    def get(self, key: str) -> str | None:
        with self._locked(write=False):
            entry = self._load(self._k(key), self._now())
        return None if entry is None else entry[0]

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        check_ttl(ttl)
        with self._locked(write=True):
            now = self._writing()
            self._save(self._k(key), value, self._deadline(now, ttl))

    def add(self, key: str, value: str, ttl: float | None = None, *, index: Sequence[IndexOp] = ()) -> bool:
        check_ttl(ttl)
        with self._locked(write=True):
            now = self._writing()
            if self._load(self._k(key), now) is not None:
                return False
            self._save(self._k(key), value, self._deadline(now, ttl))
            self._apply(index)
            return True

    def compare_and_set(
        self, key: str, expected: str | None, value: str, ttl: float | None = None, *,
        index: Sequence[IndexOp] = (),
    ) -> bool:
        check_ttl(ttl)
        with self._locked(write=True):
            now = self._writing()
            entry = self._load(self._k(key), now)
            if (None if entry is None else entry[0]) != expected:
                return False
            self._save(self._k(key), value, self._deadline(now, ttl))
            self._apply(index)
            return True

    def _apply(self, index: Sequence[IndexOp]) -> None:
        for name, member, score in index:
            self._index_put(self._ix(name), member, score)

    def index_range(self, index: str, until: float = math.inf, limit: int = 100) -> list[tuple[str, float]]:
        with self._locked(write=False):
            return self._index_range(self._ix(index), until, limit)

    def index_discard(self, index: str, member: str, score: float | None = None) -> bool:
        with self._locked(write=True):
            self._writing()
            current = self._index_score(self._ix(index), member)
            if current is None or (score is not None and current != score):
                return False
            self._index_put(self._ix(index), member, None)
            return True

    def compare_and_delete(self, key: str, expected: str) -> bool:
        with self._locked(write=True):
            now = self._writing()
            entry = self._load(self._k(key), now)
            if entry is None or entry[0] != expected:
                return False
            self._drop(self._k(key))
            return True

    def delete(self, key: str) -> None:
        with self._locked(write=True):
            self._writing()
            self._drop(self._k(key))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        check_ttl(ttl)
        with self._locked(write=True):
            now = self._writing()
            entry = self._load(self._k(key), now)
            if entry is None:
                total, expires_at = int(amount), self._deadline(now, ttl)
            else:
                try:
                    total = int(entry[0]) + int(amount)
                except ValueError:
                    raise StoreError(f"incr: value at {key!r} is not an integer") from None
                expires_at = entry[1]
            self._save(self._k(key), str(total), expires_at)
            return total

    def ttl(self, key: str) -> float | None:
        with self._locked(write=False):
            now = self._now()
            entry = self._load(self._k(key), now)
        if entry is None or entry[1] is None:
            return None
        return max(0.0, entry[1] - now)
