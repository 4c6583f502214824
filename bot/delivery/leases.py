"""Leases: who runs a job, and whether that process is still alive.

A job record names its owner, ``role@host:pid:nonce#run``. Liveness is per *process*, not per job: a process
running (or queueing) jobs keeps one ``alive:<host:pid:nonce>`` key fresh, renewed every ``ttl / 3``. A killed
worker stops renewing it, and the next try of any of its messages finds the owner dead and takes the job over
with one ``compare_and_set`` on the record. One renewal per process instead of one per job keeps the store
quiet with hundreds of jobs in flight (with SQLite every write takes the database lock).
"""
from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bot.store import Store, StoreError

log = logging.getLogger("bot.delivery")


def owner_pid(owner: str) -> int:
    """The process id inside an owner string (tests use it to kill the owner)."""
    return int(owner.split("@", 1)[1].split("#", 1)[0].split(":")[1])


def alive_key(owner: str) -> str:
    return "alive:" + owner.split("@", 1)[1].split("#", 1)[0]


def is_alive(store: Store, owner: str) -> bool:
    """Whether the process named in ``owner`` still renews its liveness key (this process always is, even
    when a slow store delayed its last renewal)."""
    if alive_key(owner) == alive_key(heartbeat().owner("x")):
        return True
    return store.get(alive_key(owner)) is not None


@dataclass
class _Held:
    store: Store
    ttl: float
    until: float | None  # time.monotonic() after which this hold lapses by itself


class Heartbeat:
    """This process's liveness, in every store it holds jobs for, from one daemon thread."""

    def __init__(self) -> None:
        self.process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._held: dict[int, _Held] = {}  # hold token -> what it keeps alive
        self._beaten: dict[int, float] = {}  # id(store) -> time.monotonic() of the last renewal
        self._renew_at: dict[int, float] = {}  # id(store) -> when its next renewal falls due (last beat + ttl / 3)
        self._tokens = itertools.count(1)
        self._runs = itertools.count(1)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._failing: set[int] = set()  # stores whose last renewal failed: warn once per outage, not per beat
        # stores a hold found overdue for a renewal: renewed even if that hold is dropped before the thread runs
        # (a job that finishes in a millisecond would otherwise wake the thread for nothing, once per message)
        self._overdue: dict[int, _Held] = {}
        # when the thread, waiting, will look next (inf: it waits for a notify): a hold whose renewal falls due
        # before that wakes it, whatever was held and dropped before (else its key could lapse meanwhile)
        self._wake_at = float("inf")

    def owner(self, role: str) -> str:
        """A fresh owner string for one run of one job by this process."""
        return f"{role}@{self.process}#{next(self._runs)}"  # unique: the process part carries a nonce

    def hold(self, store: Store, ttl: float, *, until: float | None = None) -> int:
        """Keep this process alive in ``store`` until :meth:`drop` (or ``until``); returns the token to drop.

        Never writes in the caller's thread: the first beat follows at once from the heartbeat thread, and a
        record younger than ``ttl`` is never taken over (see ``Delivery._take_over``)."""
        with self._cond:
            token = next(self._tokens)
            self._held[token] = _Held(store, ttl, until)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="wvb-heartbeat", daemon=True)
                self._thread.start()
            due = self._beaten.get(id(store), float("-inf")) + ttl / 3
            if due <= time.monotonic():
                if id(store) not in self._overdue:
                    self._overdue[id(store)] = self._held[token]
                    self._cond.notify()
            elif due < self._wake_at:  # the thread sleeps past this hold's renewal: let it plan again
                self._cond.notify()
            return token

    def drop(self, token: int) -> None:
        with self._cond:
            self._held.pop(token, None)

    def _loop(self) -> None:
        key = alive_key(self.owner("x"))
        while True:
            with self._cond:
                now = time.monotonic()
                for token in [t for t, h in self._held.items() if h.until is not None and h.until < now]:
                    del self._held[token]
                stores = {id(h.store): h for h in self._held.values()}
                stores.update(self._overdue)
                self._overdue.clear()
                due = [h for i, h in stores.items() if now - self._beaten.get(i, float("-inf")) >= h.ttl / 3]
                if not due:
                    # Wake when a held store's renewal falls due, and also once when a store beaten recently
                    # would fall due although nothing holds it now: a hold taken before then needs no notify.
                    wake = min((self._beaten.get(i, now) + h.ttl / 3 for i, h in stores.items()), default=None)
                    later = [t for t in self._renew_at.values() if t > now]
                    if later:
                        wake = min(later) if wake is None else min(wake, min(later))
                    self._wake_at = float("inf") if wake is None else max(now + 0.01, wake)
                    self._cond.wait(timeout=None if wake is None else self._wake_at - now)
                    self._wake_at = float("-inf")  # awake: it looks at every hold before it sleeps again
                    continue
            for h in due:
                try:
                    h.store.set(key, "1", ttl=h.ttl)
                except StoreError as exc:
                    level = logging.DEBUG if id(h.store) in self._failing else logging.WARNING
                    log.log(level, "heartbeat: could not renew %s: %s; retrying", key, exc)
                    self._failing.add(id(h.store))
                    time.sleep(min(1.0, h.ttl / 10))
                    continue
                if id(h.store) in self._failing:
                    self._failing.discard(id(h.store))
                    log.warning("heartbeat: renewing %s again", key)
                with self._cond:
                    self._beaten[id(h.store)] = beaten = time.monotonic()
                    self._renew_at[id(h.store)] = beaten + h.ttl / 3


_heartbeat: tuple[int, Heartbeat] | None = None
_lock = threading.Lock()


def heartbeat() -> Heartbeat:
    """This process's heartbeat (a forked child gets its own: threads and identity do not survive a fork)."""
    global _heartbeat
    current = _heartbeat
    if current is not None and current[0] == os.getpid():
        return current[1]
    with _lock:
        if _heartbeat is None or _heartbeat[0] != os.getpid():
            _heartbeat = (os.getpid(), Heartbeat())
        return _heartbeat[1]


@contextmanager
def dropped_on_error(token: int) -> Iterator[None]:
    """Drop a heartbeat hold if the block raises (a store outage must not leave a process beating forever)."""
    try:
        yield
    except BaseException:
        heartbeat().drop(token)
        raise
