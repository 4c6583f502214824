"""The one clock of core and delivery: wall time, monotonic time, sleeping and waiting on events.

Every deadline of a message (the handler's budget, a try's budget, WeChat's timeout, the last chance, the
sweeper's due times, leases) is read from a :class:`Clock` handed in by the wiring, never from ``time``
directly (``tests/test_architecture.py`` enforces it). Production uses :data:`SYSTEM`; a test hands in a
fake clock (``bot.testing.clock.FakeClock``) and plays a message's whole life — three tries, a slow job,
the sweeper, a dead owner — in milliseconds, the same way every run.

Wall time (``time()``) is what several processes and machines agree on: a message's record says when it
came in that clock. Monotonic time (``monotonic()``) is for this process's own waits: it never jumps.
"""
from __future__ import annotations

import threading
import time as _time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (shared between processes and machines)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (this process's deadlines)."""

    def sleep(self, seconds: float) -> None:
        """Pause this thread."""

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds passed; True when it is set."""


class SystemClock:
    """The real clock."""

    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds > 0:
            _time.sleep(seconds)

    @staticmethod
    def wait(event: threading.Event, timeout: float) -> bool:
        return event.wait(max(0.0, timeout))


SYSTEM: Clock = SystemClock()
