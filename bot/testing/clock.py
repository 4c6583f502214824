"""A clock a test moves by hand: the same :class:`bot.ops.clock.Clock` the bot runs on, with no real waiting.

``clock.advance(5.0)`` is WeChat's five seconds, instantly. ``sleep`` advances the clock; ``wait`` returns at
once — True if the event is set, else after advancing by the timeout — so code that waits on the clock runs
through without blocking (a test that drives several actors decides itself which moves when:
``tests/test_delivery_schedules.py``).
"""
from __future__ import annotations

import threading


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._mono = 1_000.0  # monotonic time starts elsewhere than wall time, as the real one does
        self._offset = float(start) - self._mono
        self._lock = threading.Lock()

    def time(self) -> float:
        return self._mono + self._offset

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds})")
        with self._lock:
            self._mono += seconds

    def advance_to(self, monotonic: float) -> None:
        """Move to exactly ``monotonic`` (adding a difference could miss it by a rounding)."""
        with self._lock:
            if monotonic < self._mono:
                raise ValueError(f"a clock does not go back ({monotonic} < {self._mono})")
            self._mono = monotonic

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, timeout))
        return event.is_set()
