"""The sweeper's tick: what a process does, without a request, with the records whose time has come.

WeChat's retries are not guaranteed (a network blip, WeChat giving up), and a worker can die after the last
one. So each process looks, every ``[reply] sweep_every_s`` (bot/delivery/background.py runs the loop), at the
``open`` index for records whose time has come: a finished answer past its last try goes out late (customer
service or pickup), a job whose owner died is taken over and finished, a kept answer past ``pickup_ttl_s``
expires. Every action is one move of the record, so any number of sweepers in any number of processes act on
a record once.
"""
from __future__ import annotations

from collections.abc import Callable

from bot.delivery.late import LateAnswers
from bot.delivery.outcome import Outcomes
from bot.delivery.record import FINAL, Record, State, msg_id_of
from bot.delivery.states import Actor, States
from bot.ops.metrics import EXPIRED as EXPIRED_METRIC
from bot.ops.trace import Trace


class OpenRecords:
    """What one sweep does with the records of the ``open`` index whose time has come."""

    def __init__(self, states: States, late: LateAnswers, outcomes: Outcomes,
                 take_over: Callable[[Actor, str, str, Record], bool]) -> None:
        self.states, self.late, self.outcomes, self.take_over = states, late, outcomes, take_over

    def sweep(self, limit: int = 100) -> bool:
        """Act on every due record; True when any record is still open (so the sweeper keeps going)."""
        states = self.states
        now = states.clock.time()
        for key, score in states.due(limit):
            raw, record = states.read(key)
            if raw is None or record is None or record.state in FINAL:
                states.forget_open(key, score)
            elif record.state is State.RUNNING:
                if not self.take_over(Actor.SWEEPER, key, raw, record):  # alive (or just taken over): look later
                    states.look_later(key, raw, record, now + states.config.lease_s / 2)
            elif record.state is State.DONE:
                self.late.dispatch(Actor.SWEEPER, key, raw, record)
            elif record.state is State.SENDING:
                if not self.late.resume(Actor.SWEEPER, key, raw, record):  # its sender is alive: look later
                    states.look_later(key, raw, record, now + states.config.lease_s / 2)
            elif record.state is State.PENDING:
                if now >= states.expires(record):
                    self._expire(key, raw, record)
                else:
                    states.look_later(key, raw, record, states.expires(record))
        return states.any_open()

    def _expire(self, key: str, raw: str, record: Record) -> None:
        reason = f"kept {self.states.config.pickup_ttl_s:g} s for pickup; the user wrote nothing since"
        if self.states.expire(key, raw, record, reason):
            EXPIRED_METRIC.inc()
            self.outcomes.done(record.trace or Trace(msg_id_of(key, record)), "expired", parts=record.total,
                               reason=reason, answer=record.answer)
