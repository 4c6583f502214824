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
        self._wall = float(start)
        self._offset = 1_000.0 - float(start)  # monotonic time starts elsewhere, as the real one does
        self._lock = threading.Lock()

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._wall + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds})")
        with self._lock:
            self._wall += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, timeout))
        return event.is_set()
