"""The sweeper: in every process that runs jobs, a thread that looks at records no request will come for.

WeChat's retries are not guaranteed (a network blip, WeChat giving up), and a worker can die after the last
one. So each process looks, every ``[reply] sweep_every_s``, at the ``open`` index for records whose time
has come: a finished answer past its last try goes out late (customer service or pickup), a job whose owner
died is taken over and finished, a kept answer past ``pickup_ttl_s`` expires. Every action is claimed with a
compare-and-set, so any number of sweepers in any number of processes act on a record once. The same tick
sends the typing indicator for this process's jobs that run long.

The thread starts with the delivery (every web worker and RQ worker, whether or not a message ever reaches
it) and runs as long as the process does; with nothing open it looks every ``IDLE_EVERY_S`` instead. It holds
its delivery only weakly and stops when that is gone or its store is closed.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from bot.delivery.late import LateAnswers
from bot.delivery.ledger import Ledger, closed, open_at, unlisted
from bot.delivery.record import DONE, EXPIRED, FINAL, OPEN, PENDING, RUNNING, Record
from bot.ops.metrics import EXPIRED as EXPIRED_METRIC
from bot.store import StoreError

log = logging.getLogger("bot.delivery")

IDLE_EVERY_S = 5.0  # how often an idle sweeper still looks (another process's dead job is found that soon)


class Sweepable(Protocol):
    def sweep(self) -> bool:
        """Act on what is due; True when anything is open or running (keep sweeping)."""


class Sweeper:
    def __init__(self, target: Sweepable, every_s: float) -> None:
        self._target = weakref.ref(target)
        self.every_s = every_s
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._touched = 0.0  # when a message last asked for it: an idle thread does not stop right after

    def ensure_running(self) -> None:
        """Start the thread in this process if it is not running (cheap when it is: called per message)."""
        self._touched = time.monotonic()
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid, self._stop = os.getpid(), threading.Event()
                self._thread = threading.Thread(target=self._loop, args=(self._stop,), name="wvb-sweeper",
                                                daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, stop: threading.Event) -> None:
        wait = self.every_s
        while not stop.wait(wait):
            target = self._target()
            if target is None:
                return
            try:
                busy = target.sweep()
            except StoreError as exc:
                if "closed" in str(exc):
                    return
                log.warning("sweeper: the store failed (%s); trying again in %.1f s", exc, self.every_s)
                busy = True
            except Exception:  # never let the thread die silently: the next tick tries again
                log.exception("sweeper: unexpected error")
                busy = True
            del target
            # nothing open here and no job running: look less often (a record written by another process is
            # found within IDLE_EVERY_S)
            idle = not busy and time.monotonic() - self._touched > self.every_s
            wait = max(self.every_s, IDLE_EVERY_S) if idle else self.every_s


class OpenRecords:
    """What one sweep does with the records of the ``open`` index whose time has come."""

    def __init__(self, ledger: Ledger, late: LateAnswers, take_over: Callable[[str, str, Record], bool],
                 lease_s: float) -> None:
        self.ledger, self.late, self.take_over, self.lease_s = ledger, late, take_over, lease_s
        self.store = ledger.store

    def sweep(self, limit: int = 100) -> bool:
        """Act on every due record; True when any record is still open (so the sweeper keeps going)."""
        now = time.time()
        for key, score in self.store.index_range(OPEN, until=now, limit=limit):
            raw, record = self.ledger.read(key)
            if raw is None or record is None or record.state in FINAL:
                self.store.index_discard(OPEN, key, score)
            elif record.state == RUNNING:
                if not self.take_over(key, raw, record):  # alive (or just taken over): look again later
                    self.ledger.swap(key, raw, record, open_at(key, now + self.lease_s / 2))
            elif record.state == DONE:
                self.late.dispatch(key, raw, record, background=True)
            elif record.state == PENDING:
                if now >= self.ledger.expires(record):
                    self._expire(key, raw, record)
                else:
                    self.ledger.swap(key, raw, record, open_at(key, self.ledger.expires(record)))
        return bool(self.store.index_range(OPEN, limit=1))

    def _expire(self, key: str, raw: str, record: Record) -> None:
        if self.ledger.swap(key, raw, record.but(state=EXPIRED, parts=None), closed(key),
                            unlisted(record.openid or "", key)):
            EXPIRED_METRIC.inc()
            self.ledger.done(record.trace or {"msg_id": key}, "expired", parts=record.total,
                 reason=f"kept {self.ledger.config.pickup_ttl_s:g} s for pickup; the user wrote nothing since")
