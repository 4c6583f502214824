"""Late answers: what happens to an answer that no try of its message can carry any more.

Through the customer-service API where the account has it (every part in order), else — or when WeChat
refuses it for this message — kept for pickup with the user's next message. Whoever wins the one move out of
``done`` (the job that finished late, the last try, or the sweeper) sends it: at most once by customer
service, exactly once by pickup. Sending runs on the delivery's bounded pool when a request or the sweeper
decided it, so neither waits for WeChat's API.
"""
from __future__ import annotations

import logging

from bot.config import ReplyConfig
from bot.core.answer import Answer, Part, Text
from bot.delivery.customer_service import CustomerService, Sent
from bot.delivery.executors import Tasks
from bot.delivery.outcome import Outcomes
from bot.delivery.parts import split
from bot.delivery.pickup import Pickup
from bot.delivery.record import Record, State, msg_id_of
from bot.delivery.states import Actor, States
from bot.ops.metrics import KEPT, SPLITS, labelled
from bot.ops.trace import Trace

log = logging.getLogger("bot.delivery")


class LateAnswers:
    def __init__(self, states: States, cs: CustomerService, pickup: Pickup, outcomes: Outcomes, tasks: Tasks,
                 config: ReplyConfig) -> None:
        self.states, self.cs, self.pickup, self.outcomes = states, cs, pickup, outcomes
        self.tasks, self.config = tasks, config

    def parts(self, answer: Answer, *, for_pickup: bool) -> list[Part]:
        """The answer in messages WeChat accepts; texts meant for pickup end with ``more_marker``."""
        parts = split(answer, self.config.max_text_bytes, self.config.more_marker if for_pickup else None)
        if len(parts) > 1:
            SPLITS.inc()
        return parts

    def dispatch(self, actor: Actor, key: str, raw: str, record: Record) -> bool:
        """Send or keep the finished answer in ``record`` (running or done; its answer and trace set). False
        when the record moved meanwhile (the caller reads it again). A job sends in its own thread; a try or
        the sweeper hands the sending to the pool."""
        answer = record.answer or Answer()
        if self.cs.available(probe=True):
            parts = self.parts(answer, for_pickup=False)
            sending = self.states.send_late(actor, key, raw, record, answer, len(parts))
            if sending is None:
                return False
            if actor is Actor.JOB:
                self.send_parts(key, sending, parts)
            else:
                self.tasks.spawn(lambda: self.send_parts(key, sending, parts))
            return True
        return self.pickup.keep(actor, key, raw, record, self.parts(answer, for_pickup=True), "no_customer_service")

    def send_parts(self, key: str, record: Record, parts: list[Part], first: int = 0) -> None:
        """Send ``parts[first:]`` by customer service in order; what WeChat refuses is kept for pickup."""
        trace = record.trace or Trace(msg_id_of(key, record))
        msg_id, total = trace.msg_id, record.total or len(parts)
        for i in range(first, len(parts)):
            outcome = self.cs.send(msg_id, record.openid or "", parts[i])
            if outcome is Sent.NOTHING:
                self.outcomes.done(trace, "customer_service", sent=False, reason="the late answer was empty",
                                   answer=record.answer)
                return
            if outcome is Sent.REFUSED:
                self._keep_rest(key, parts[i:], "refused")
                return
        self.outcomes.done(trace, "customer_service", sent=True, parts=total, answer=record.answer)

    def _keep_rest(self, key: str, rest: list[Part], why: str) -> None:
        """Parts WeChat refused go to pickup, re-cut so each text ends with the marker (the record is ours: it
        was marked delivered before sending, and only its sender moves it back)."""
        if rest and all(isinstance(p, Text) for p in rest):
            rest = self.parts(Answer.text("\n".join(p.content for p in rest if isinstance(p, Text))),
                              for_pickup=True)
        raw, record = self.states.read(key)
        kept = (raw is not None and record is not None and record.state is State.DELIVERED
                and self.states.keep_refused(key, raw, record, Answer(tuple(rest))))
        if kept:
            labelled(KEPT, why).inc()
            log.info("delivery msg_id=%s answer kept for pickup (%s, %d part(s))", msg_id_of(key, record), why,
                     len(rest))
        else:
            log.error("delivery msg_id=%s: refused parts could not be kept for pickup", msg_id_of(key, record))
