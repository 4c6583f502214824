"""When WeChat sent a request, on our clock: a try's 5 s run from then, not from when a thread picked it up.

Two witnesses. The request's ``timestamp`` is WeChat's send time in whole seconds, on WeChat's clock; the
server (gunicorn, through bot/web/gunicorn_worker.py) says when the connection was queued for a thread. The
difference between our receive time and the timestamp is the clocks' skew plus the network plus the part of
a second the timestamp drops, plus any wait before the connection was accepted; its smallest value over the
last minutes estimates the skew (clamped to ``[reply] clock_skew_s``). So a request waited, before a thread
took it, at least since the connection was queued (``waited``), and — if its timestamp is its own sending —
since ``timestamp + skew + 1 s`` (``stamp_late``). Whether WeChat signs a retry anew or sends the first try's
query again is not documented: delivery trusts the timestamp for the first try of a message only, and so do the
queue-wait metric and the overload warning (:meth:`WeChatTiming.observe`, once delivery has said which try it was):
a retry that carries its first try's timestamp was sent 5 or 10 s after it without waiting anywhere.

Under a burst requests wait: a try that waited past its budget must not answer with the answer (WeChat may
have dropped it, and an answer marked delivered on a dropped connection is lost), and the bot says, once a
minute, that it is overloaded and how to size it.
"""
from __future__ import annotations

import logging
import threading

from bot.ops.clock import Clock
from bot.ops.metrics import QUEUE_WAIT

log = logging.getLogger("bot.webhook")

WINDOW_S = 600.0  # the skew is the smallest (receive - timestamp) seen over this long
UNRELATED_S = 60.0  # a timestamp this far back says nothing about when the try was sent
OVERLOADED_S = 1.0  # a request that waited longer than this before a thread took it: the bot is overloaded
ADVICE = ("more requests than threads: give each worker threads >= messages in flight per worker x 1.1 "
          "(gunicorn WVB_THREADS / threads), or more workers (WEB_CONCURRENCY); README \"Delivery\", overload")


class WeChatTiming:
    """Per callback: judges each request's send time and wait; warns (once a minute) while overloaded."""

    def __init__(self, clock: Clock, *, skew_s: float, warn_every_s: float = 60.0) -> None:
        self.clock, self.skew_s, self.warn_every_s = clock, skew_s, warn_every_s
        self._minima: dict[int, float] = {}  # minute -> smallest (receive - timestamp) seen in it
        self._warned = -float("inf")
        self._worst = 0.0
        self._lock = threading.Lock()

    def judge(self, timestamp: str | None, received_at: float | None) -> tuple[float, float]:
        """``(waited, stamp_late)``: seconds since the server queued the connection, and since the latest moment
        the timestamp allows for its sending (0 when the timestamp says nothing more)."""
        now = self.clock.time()
        received = received_at if received_at is not None and received_at <= now else now
        waited, late = now - received, 0.0
        try:
            stamp = int(timestamp) if timestamp else None
        except ValueError:
            stamp = None
        if stamp is not None:
            late = max(0.0, now - (stamp + self._offset(received - stamp, now) + 1.0))
            if late > UNRELATED_S:  # no try of WeChat's waits that long: a replayed sample, a clock far off
                late = 0.0
        return waited, late

    def observe(self, waited: float, stamp_late: float, attempt: int) -> None:
        """Count how long a try waited before a thread took it, and warn while that means overload. ``attempt``
        is the try's number (0: not known). Only a first try's timestamp is its own sending: a retry that carries
        it (WeChat re-sends the same query) is 5 or 10 s past it without having waited, so it counts
        ``waited`` alone — else every answer given at a retry would count as seconds in the queue and warn."""
        wait = waited if attempt > 1 else max(waited, stamp_late)
        QUEUE_WAIT.observe(wait)
        if wait > OVERLOADED_S:
            self._overloaded(wait, self.clock.time())

    def _offset(self, sample: float, now: float) -> float:
        """The skew: the smallest sample of the last ``WINDOW_S``, this one included, within ``skew_s``."""
        minute = int(now // 60)
        minima = self._minima
        if sample < minima.get(minute, float("inf")):
            with self._lock:
                if sample < minima.get(minute, float("inf")):
                    minima[minute] = sample
                    for old in [m for m in minima if m <= minute - WINDOW_S / 60]:
                        del minima[old]
        return max(-self.skew_s, min(self.skew_s, min(minima.values(), default=sample)))

    def _overloaded(self, waited: float, now: float) -> None:
        self._worst = max(self._worst, waited)
        if now - self._warned < self.warn_every_s:
            return
        with self._lock:
            if now - self._warned < self.warn_every_s:
                return
            self._warned, worst, self._worst = now, self._worst, 0.0
        log.warning("overloaded: requests waited up to %.1f s before a thread took them (WeChat waits 5 s); "
                    "tries past their budget leave the answer to a later try, customer service or pickup. %s",
                    worst, ADVICE)
