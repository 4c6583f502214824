"""Writes of many threads of one process made as one: the threads that write while a write is under way wait,
and the next of them writes for all of them at once.

Why. Under a webhook's threads (64 a gunicorn worker) the cost of a SQLite write is not SQLite's work but the
hand-offs around it: Python's ``sqlite3`` releases the GIL around each statement, the thread must win it back
from the others, and the threads queued behind it for the connection sleep and wake in turn. Writing a group
costs that once for all of its members: one statement, one commit, one hand-off (measured: README
"Benchmarks"). Nobody waits for a group to fill: a write that finds nobody writing goes at once (a group of one),
so a quiet process writes exactly as before.

How. Leader and followers, no thread of its own: the thread that finds nobody writing leads — it takes every
write queued so far (its own first, at most ``limit``), runs ``write`` on them, wakes their threads, and hands
the lead to the first write still queued, whose thread then does the same. Each thread returns when its own
write is done, and a leader writes one group only: no thread writes for others longer than its own group.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from bot.store.base import StoreError, fork_lock


@dataclass(eq=False)
class Member:
    """One thread's write in a group: what to write, and what came of it (``done`` is set when it has)."""

    key: str
    value: str
    expires_in: float | None  # the TTL: the write's time is the group's
    condition: str  # what else the write depends on (for add_if_empty: the index that must be empty)
    written: bool = False
    error: BaseException | None = None
    lead: bool = False  # woken to write the next group, not because this write is done
    done: threading.Event | None = None  # what a waiting thread waits on (a thread that leads at once needs none)


class WriteGroups:
    """Groups the writes of this process's threads: ``write(members)`` makes them, setting each ``written``."""

    def __init__(self, write: Callable[[list[Member]], None], limit: int = 64) -> None:
        self._write, self._limit = write, limit
        self._lock = threading.Lock()
        self._queued: list[Member] = []
        self._leading = False  # a thread is writing a group (then writes that come wait for the next one)
        self._pid = os.getpid()

    def join(self, member: Member) -> bool:
        """Write ``member`` in a group (led by this thread or another) and say whether it was written."""
        lead = self._enqueue(member)
        if not lead:
            assert member.done is not None
            member.done.wait()  # set once: either it was written, or this thread leads the next group
            lead = member.lead
        if lead:
            self._lead(member)
        if member.error is not None:
            if lead and not isinstance(member.error, Exception):  # this thread was interrupted: as it was
                raise member.error
            raise StoreError(str(member.error) or type(member.error).__name__) from member.error
        return member.written

    def _enqueue(self, member: Member) -> bool:
        if self._pid != os.getpid():  # a forked child: its parent's queue, leader and lock are not its own
            with fork_lock():
                if self._pid != os.getpid():
                    self._lock, self._queued, self._leading = threading.Lock(), [], False
                    self._pid = os.getpid()
        with self._lock:
            self._queued.append(member)
            if self._leading:
                member.done = threading.Event()
                return False
            self._leading = True
            return True

    def _lead(self, member: Member) -> None:
        with self._lock:  # this thread's write is first: it was queued first, or handed the lead
            group, self._queued = self._queued[:self._limit], self._queued[self._limit:]
        try:
            self._write(group)
        except BaseException as exc:  # noqa: BLE001 - every member learns it, the leader's own thread too
            for m in group:
                m.error = exc
        finally:
            with self._lock:
                following = self._queued[0] if self._queued else None
                if following is None:
                    self._leading = False
                else:
                    following.lead = True
            for m in group:
                if m.done is not None and m is not member:
                    m.done.set()
            if following is not None and following.done is not None:
                following.done.set()
