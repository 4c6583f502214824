"""Leases: who runs a job, and whether that process is still alive.

A job record names its owner, ``role@host:pid:nonce#run``. Liveness is per *process* (per delivery runtime),
not per job: a process holding jobs keeps one ``alive:<host:pid:nonce>`` key fresh, renewed every ``ttl / 3``;
its value is the wall-clock time until which the process vouches for its jobs (and the key expires then
too). A killed worker stops renewing it, and the next try of any of its messages (or a sweeper) finds the
owner dead and takes the job over with one move of the record. One renewal per process instead of one per
job keeps the store quiet with hundreds of jobs in flight (with SQLite every write takes the database lock).

Time comes from the injected clock, so a test can let a dead process's lease lapse without waiting; the
renewals run on a thread the delivery runtime starts (:meth:`Heartbeat.run`), or a test calls
:meth:`Heartbeat.beat_if_due` itself.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from bot.ops.clock import Clock
from bot.store import Store

log = logging.getLogger("bot.delivery")


def owner_pid(owner: str) -> int:
    """The process id inside an owner string (tests use it to kill the owner)."""
    return int(owner.split("@", 1)[1].split("#", 1)[0].split(":")[1])


def alive_key(owner: str) -> str:
    return "alive:" + owner.split("@", 1)[1].split("#", 1)[0]


def _vouched_until(value: str) -> float:
    try:
        return float(value)
    except ValueError:  # written by an older version ("1"): the key's expiry is all there is
        return math.inf


class Heartbeat:
    """This process's liveness in one store: renewed while any job of the process holds it."""

    def __init__(self, store: Store, ttl: float, clock: Clock, *, process: str | None = None) -> None:
        self.store, self.ttl, self.clock = store, ttl, clock
        self._tokens = itertools.count(1)
        self._runs = itertools.count(1)
        self._fixed = process
        self.reset()

    def reset(self) -> None:
        """A new identity with nothing held: at creation, and in a forked child (an RQ work horse), whose
        jobs must not pass for its parent's nor lean on a renewing thread the fork did not copy."""
        self.pid = os.getpid()
        self.process = self._fixed or f"{socket.gethostname()}:{self.pid}:{uuid.uuid4().hex[:6]}"
        self.key = f"alive:{self.process}"
        self._holds: dict[int, float | None] = {}  # hold token -> clock.monotonic() after which it lapses
        self._beaten = -math.inf  # clock.monotonic() of the last renewal
        self._cond = threading.Condition()
        self._idle = True  # the renewing thread sleeps until notified (nothing held, nothing due)
        self._wanted = False  # a hold woke the thread: renew once even if it was dropped before the thread ran
        self._failing = False  # the last renewal failed: warn once per outage, not per beat

    def owner(self, role: str) -> str:
        """A fresh owner string for one run of one job by this process."""
        return f"{role}@{self.process}#{next(self._runs)}"  # unique: the process part carries a nonce

    def hold(self, *, until: float | None = None) -> int:
        """Keep this process alive until :meth:`drop` (or ``until``, on ``clock.monotonic()``); the token to drop.

        Never writes in the caller's thread: a record younger than ``ttl`` is never taken over, and the
        renewing thread beats before that."""
        with self._cond:
            token = next(self._tokens)
            self._holds[token] = until
            if self._idle:  # it sleeps with nothing to renew: this hold needs its renewals
                self._wanted = True
                self._cond.notify()
            return token

    def drop(self, token: int) -> None:
        with self._cond:
            self._holds.pop(token, None)

    def is_alive(self, owner: str) -> bool:
        """Whether the process named in ``owner`` still vouches for its jobs (this process always does, even
        when a slow store delayed its last renewal)."""
        key = alive_key(owner)
        if key == self.key:
            return True
        value = self.store.get(key)
        return value is not None and _vouched_until(value) > self.clock.time()

    def _due(self) -> float | None:
        """When the next renewal is due (None: nothing is held); lapsed holds are forgotten."""
        now = self.clock.monotonic()
        for token in [t for t, until in self._holds.items() if until is not None and until < now]:
            del self._holds[token]
        return self._beaten + self.ttl / 3 if self._holds else None

    def beat_if_due(self) -> bool:
        """Renew now if a hold needs it; True when it renewed."""
        with self._cond:
            due = self._due()
            if due is None or self.clock.monotonic() < due:
                return False
        return self.beat()

    def beat(self) -> bool:
        """Renew now (the renewing thread, or a test playing it)."""
        try:
            # liveness is the value (until when, on the delivery clock); the key's own expiry only clears it away
            self.store.set(self.key, repr(self.clock.time() + self.ttl), ttl=self.ttl * 4)
        except Exception as exc:  # StoreError, or a client closed under it: the thread must not die
            log.log(logging.DEBUG if self._failing else logging.WARNING, "heartbeat: could not renew %s: %s; "
                    "retrying", self.key, exc)
            self._failing = True
            return False
        if self._failing:
            self._failing = False
            log.warning("heartbeat: renewing %s again", self.key)
        with self._cond:
            self._beaten = self.clock.monotonic()
        return True

    def plan(self) -> tuple[bool, float | None]:
        """What the renewing thread does now: beat (True), or sleep until the time returned (``None``: until a
        hold notifies it). Call with the condition held (``run``), or from a test that plays the thread."""
        due = self._due()
        now = self.clock.monotonic()
        renew_at = self._beaten + self.ttl / 3
        if due is None and self._wanted and now >= renew_at:
            # a hold woke it and was dropped at once (a job of a millisecond): renew anyway, so the next
            # ttl / 3 of quick jobs find it awake and wake it no more (one wake per message else)
            due = now
        self._wanted = False
        if due is not None and now >= due:
            self._idle = False
            return True, None
        # with nothing held it still wakes when the last beat's renewal falls due: a hold taken meanwhile
        # (which did not notify) is renewed in time
        self._idle = due is None and now >= renew_at
        return False, None if self._idle else (due if due is not None else renew_at)

    def run(self, stop: threading.Event) -> None:
        """The renewing thread: beats while anything is held, sleeps (until a hold comes) otherwise."""
        while not stop.is_set():
            with self._cond:
                beat, wake = self.plan()
                if not beat:
                    self._cond.wait(None if wake is None else max(0.01, wake - self.clock.monotonic()))
                    continue
            if not self.beat():
                stop.wait(min(1.0, self.ttl / 10))

    def stop(self) -> None:
        """Wake the renewing thread (its stop event is set by the caller)."""
        with self._cond:
            self._cond.notify_all()


@contextmanager
def dropped_on_error(heartbeat: Heartbeat, token: int) -> Iterator[None]:
    """Drop a heartbeat hold if the block raises (a store outage must not leave a process beating forever)."""
    try:
        yield
    except BaseException:
        heartbeat.drop(token)
        raise
