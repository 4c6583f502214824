"""In-process store: a dict behind a lock, for tests and single-process development.

State is lost on restart and not shared between processes (use ``sqlite://`` for several gunicorn
workers on one machine, ``redis://`` for several machines).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .base import Entry, LockingStore


class MemoryStore(LockingStore):
    """Dict + lock; expiry is checked lazily on read and swept every few hundred writes."""

    def __init__(self, prefix: str = "wvb:") -> None:
        super().__init__(prefix)
        self._data: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        # Nothing outside this process reads these expiries, so use a clock that never jumps.
        return time.monotonic()

    @contextmanager
    def _locked(self, write: bool) -> Iterator[None]:
        with self._lock:
            yield

    def _load(self, key: str, now: float) -> Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _save(self, key: str, value: str, expires_at: float | None) -> None:
        self._data[key] = (value, expires_at)

    def _drop(self, key: str) -> None:
        self._data.pop(key, None)

    def _purge(self, now: float) -> None:
        expired = [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]
        for k in expired:
            del self._data[k]

    def ping(self) -> None:
        """Always reachable."""

    def close(self) -> None:
        with self._lock:
            self._data.clear()
