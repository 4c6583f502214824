"""In-process store: a dict behind a lock, for tests and single-process development.

State is lost on restart and not shared between processes (use ``sqlite://`` for several gunicorn
workers on one machine, ``redis://`` for several machines).
"""
from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

from bot.store.base import Entry, LockingStore, T


class MemoryStore(LockingStore):
    """Dict + lock; expiry is checked lazily on read, and expired keys leave in expiry order, a few at a time.

    A heap of ``(expires_at, key)`` makes each sweep cost what it removes: a full scan every few hundred
    writes cost more per message than the rest of the store as the dict grew (one record per message for
    ``state_ttl_s``). A key rewritten with a later expiry leaves a stale heap item, skipped when it comes up.
    """

    purge_every = 1  # a sweep is a look at the top of the heap

    def __init__(self, prefix: str = "wvb:") -> None:
        super().__init__(prefix)
        self._data: dict[str, Entry] = {}
        self._expiries: list[tuple[float, str]] = []
        self._indexes: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        # Nothing outside this process reads these expiries, so use a clock that never jumps.
        return time.monotonic()

    def _write(self, op: Callable[[float], T]) -> T:
        with self._lock:
            return op(self._writing())

    def _read(self, op: Callable[[], T]) -> T:
        with self._lock:
            return op()

    def _load(self, key: str, now: float) -> Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _save(self, key: str, value: str, expires_at: float | None) -> None:
        old = self._data.get(key)
        self._data[key] = (value, expires_at)
        if expires_at is not None and (old is None or old[1] != expires_at):  # incr keeps its expiry: no new item
            heapq.heappush(self._expiries, (expires_at, key))

    def _drop(self, key: str) -> None:
        self._data.pop(key, None)

    def _purge(self, now: float) -> None:
        heap, data = self._expiries, self._data
        while heap and heap[0][0] <= now:
            key = heapq.heappop(heap)[1]
            entry = data.get(key)
            if entry is not None and entry[1] is not None and entry[1] <= now:
                del data[key]

    def _index_put(self, index: str, member: str, score: float | None) -> None:
        if score is not None:
            self._indexes.setdefault(index, {})[member] = score
        elif index in self._indexes:
            members = self._indexes[index]
            members.pop(member, None)
            if not members:
                del self._indexes[index]

    def _index_score(self, index: str, member: str) -> float | None:
        return self._indexes.get(index, {}).get(member)

    def _index_range(self, index: str, until: float, limit: int) -> list[tuple[str, float]]:
        found = [(m, s) for m, s in self._indexes.get(index, {}).items() if s <= until]
        return heapq.nsmallest(limit, found, key=lambda item: (item[1], item[0]))

    def ping(self) -> None:
        """Always reachable."""

    def close(self) -> None:
        with self._lock:
            self._data.clear()
            self._expiries.clear()
            self._indexes.clear()
