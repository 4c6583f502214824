"""The background work of one bot's delivery in a process: its heartbeat, its sweeper, a bounded pool, and timers.

Built with the delivery (bot/runtime.py), started explicitly — by the wiring in every web worker and RQ worker,
whether or not a message ever reaches it, and again (cheaply) per message, so a process forked after the
build gets its own threads — and stopped explicitly: by tests, and by gunicorn's ``worker_exit`` hook
(:func:`stop_all`). Nothing in delivery starts a thread of its own: streams read after their try, late sends
and releases run on :attr:`DeliveryRuntime.tasks`; work due at a moment (a fast handler's watchdog) on
:attr:`DeliveryRuntime.timers`.

The sweeper holds its delivery only weakly and stops when that is gone or its store is closed; with nothing
open it looks every ``IDLE_EVERY_S`` instead of every ``sweep_every_s``.
"""
from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import math
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from bot.delivery.executors import ThreadPool
from bot.delivery.leases import Heartbeat
from bot.ops.account import serving
from bot.ops.clock import Clock
from bot.store import StoreError

log = logging.getLogger("bot.delivery")

IDLE_EVERY_S = 5.0  # how often an idle sweeper still looks (another process's dead job is found that soon)

_started: weakref.WeakSet[DeliveryRuntime] = weakref.WeakSet()


class DeliveryRuntime:
    def __init__(self, heartbeat: Heartbeat, sweep: Callable[[], bool], *, every_s: float, clock: Clock,
                 account: str = "", threads: int = 8) -> None:
        self.heartbeat, self.every_s, self.clock, self.account = heartbeat, every_s, clock, account
        self._sweep = weakref.WeakMethod(sweep)
        self.tasks = ThreadPool(threads, "wvb-late")
        self.timers = TimerThread(clock)
        self._pid = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._touched = clock.monotonic()  # when a message last came: an idle sweeper does not slow down at once
        self._closed = False

    def start(self, *, sweeper: bool = True) -> None:
        """Start the heartbeat and sweeper threads in this process (again after a fork); cheap when running.
        ``sweeper=False``: the heartbeat only (an RQ work horse, forked for one job)."""
        self._touched = self.clock.monotonic()
        if self._pid == os.getpid() or self._closed:
            return
        with self._lock:
            if self._pid == os.getpid() or self._closed:
                return
            if self.heartbeat.pid != os.getpid():
                self.heartbeat.reset()
            self._pid, self._stop = os.getpid(), threading.Event()
            self._threads = [threading.Thread(target=self.heartbeat.run, args=(self._stop,), name="wvb-heartbeat",
                                              daemon=True)]
            if sweeper:
                self._threads.append(threading.Thread(target=self._sweeping, args=(self._stop,), name="wvb-sweeper",
                                                      daemon=True))
            for thread in self._threads:
                thread.start()
            _started.add(self)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the threads and the pool (running tasks finish on their own)."""
        with self._lock:
            self._closed = True
            self._stop.set()
            self.heartbeat.stop()
            threads, self._threads = self._threads, []
        self.tasks.close()
        self.timers.close()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        _started.discard(self)

    def _sweeping(self, stop: threading.Event) -> None:
        wait = self.every_s
        while not self.clock.wait(stop, wait):
            sweep = self._sweep()
            if sweep is None:
                return
            try:
                with serving(self.account):  # its log lines and metrics name the account
                    busy = sweep()
            except StoreError as exc:
                if "closed" in str(exc):
                    return
                log.warning("sweeper: the store failed (%s); trying again in %.1f s", exc, self.every_s)
                busy = True
            except Exception:  # never let the thread die silently: the next tick tries again
                log.exception("sweeper: unexpected error")
                busy = True
            del sweep
            # nothing open here and no job running: look less often (a record written by another process is
            # found within IDLE_EVERY_S)
            idle = not busy and self.clock.monotonic() - self._touched > self.every_s
            wait = max(self.every_s, IDLE_EVERY_S) if idle else self.every_s


class TimerThread:
    """Work due at a moment on the delivery clock, run on one thread of this process (started on first use, and
    again after a fork), in a copy of the arming thread's context. A cancelled entry is skipped, never run.

    Cheap to arm and to cancel (a heap push, a flag): a fast handler arms one per message and cancels it when it
    answers in time. Arming wakes the thread only when the entry is due before the thread would look anyway
    (``_until``); when the heap empties, the thread looks once more after the last delay armed before it sleeps
    long. Under load, messages answered in milliseconds had emptied the heap between messages, and each next one
    woke the thread: two context switches a message, for nothing."""

    def __init__(self, clock: Clock, name: str = "wvb-timers") -> None:
        self.clock, self.name = clock, name
        self._heap: list[list[Any]] = []  # [due (clock.monotonic()), sequence, work or None once cancelled]
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0
        self._closed = False
        self._until = -math.inf  # the thread looks at the heap again by then (on clock.monotonic())
        self._linger = 0.0  # the last delay armed: how long an emptied heap is watched before a long sleep
        self._armed = False  # an entry was armed since the thread last looked

    def after(self, delay_s: float, work: Callable[[], None]) -> Callable[[], None]:
        context = contextvars.copy_context()
        entry: list[Any] = [self.clock.monotonic() + delay_s, next(self._order), lambda: context.run(work)]
        with self._lock:
            if self._pid != os.getpid() and not self._closed:
                self._pid, self._heap, self._until = os.getpid(), [], -math.inf
                threading.Thread(target=self._run, name=self.name, daemon=True).start()
            heapq.heappush(self._heap, entry)
            self._linger, self._armed = delay_s, True
            if entry[0] < self._until:  # due before the thread would look: wake it
                self._wake.set()

        def cancel() -> None:
            entry[2] = None
        return cancel

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._heap = []
            self._wake.set()

    def _run(self) -> None:
        pid = os.getpid()
        while True:
            due: list[Callable[[], None]] = []
            with self._lock:
                if self._closed or self._pid != pid:
                    return
                now, heap = self.clock.monotonic(), self._heap
                while heap and (heap[0][2] is None or heap[0][0] <= now):
                    work = heapq.heappop(heap)[2]
                    if work is not None:
                        due.append(work)
                if heap:
                    wait = heap[0][0] - now
                else:  # entries came since the last look: more may come, look once more before sleeping long
                    wait = min(self._linger, IDLE_EVERY_S) if self._armed and self._linger > 0 else IDLE_EVERY_S
                self._armed = False
                self._until = -math.inf if due else now + wait  # with work to run, it looks again right after
                self._wake.clear()
            for work in due:
                try:
                    work()
                except Exception:  # never let the thread die: later timers still run
                    log.exception("delivery timer crashed")
            if not due:
                self.clock.wait(self._wake, wait)


def stop_all() -> None:
    """Stop every delivery runtime of this process (gunicorn's ``worker_exit``, the end of a test session)."""
    for runtime in list(_started):
        runtime.stop()
