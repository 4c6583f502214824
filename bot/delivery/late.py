"""Late answers: what happens to an answer that no try of its message can carry any more.

Through the customer-service API where the account has it (every part in order; a WeCom app: ``message/send``),
else — or when WeChat refuses it for this message — kept for pickup with the user's next message; a user no way
reaches (outside a WeCom app's visible range) makes it undeliverable. Whoever wins the one move out of
``done`` (the job that finished late, the last try, or the sweeper) becomes its *sender*: the record says who
sends and how many parts WeChat took, each recorded before the next is sent, so a sender that dies is
replaced by the sweeper and the rest still goes, in order, once. Sending runs on the delivery's bounded pool
when a request or the sweeper decided it, so neither waits for WeChat's API.
"""
from __future__ import annotations

import logging

from bot.config import ReplyConfig
from bot.core.answer import Answer, Part, Text
from bot.delivery.customer_service import UNREACHABLE, CustomerService, Sent, cs_payload
from bot.delivery.executors import Tasks
from bot.delivery.leases import Heartbeat, dropped_on_error
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
                 heartbeat: Heartbeat, config: ReplyConfig) -> None:
        self.states, self.cs, self.pickup, self.outcomes = states, cs, pickup, outcomes
        self.tasks, self.heartbeat, self.config = tasks, heartbeat, config

    def parts(self, answer: Answer, *, for_pickup: bool) -> list[Part]:
        """The answer in messages WeChat accepts; texts meant for pickup end with ``more_marker``."""
        parts = split(answer, self.config.max_text_bytes, self.config.more_marker if for_pickup else None)
        if len(parts) > 1:
            SPLITS.inc()
        return parts

    def dispatch(self, actor: Actor, key: str, raw: str, record: Record) -> bool:
        """Send or keep the finished answer in ``record`` (running or done; its answer and trace set). False
        when the record moved meanwhile (the caller reads it again)."""
        answer = record.answer or Answer()
        if self.cs.available(probe=True):
            return self.send(actor, key, raw, record, answer, self.parts(answer, for_pickup=False))
        return self.pickup.keep(actor, key, raw, record, self.parts(answer, for_pickup=True), "no_customer_service")

    def send(self, actor: Actor, key: str, raw: str, record: Record, answer: Answer, parts: list[Part],
             first: int = 0) -> bool:
        """Become the sender of ``parts[first:]`` (one move: the record says who sends) and send them: in this
        thread for a job, on the pool for a try or the sweeper (neither waits for WeChat's API). False when the
        record moved meanwhile."""
        token, sender = self.heartbeat.hold(), self.heartbeat.owner("sender")
        with dropped_on_error(self.heartbeat, token):
            sending = self.states.send_late(actor, key, raw, record, answer, Answer(tuple(parts)), sender, first)
        if sending is None:
            self.heartbeat.drop(token)
            return False
        if actor is Actor.JOB:
            self.send_rest(key, sender, token)
        else:
            self.tasks.spawn(lambda: self.send_rest(key, sender, token))
        return True

    def resume(self, actor: Actor, key: str, raw: str, record: Record) -> bool:
        """A sender whose process died: send what it had not sent, as the new sender. False when it is alive
        (or the record moved)."""
        if not self.states.owned_long_enough(record) or (record.owner is not None
                                                          and self.heartbeat.is_alive(record.owner)):
            return False
        token, sender = self.heartbeat.hold(), self.heartbeat.owner("sender")
        with dropped_on_error(self.heartbeat, token):
            taken = self.states.take_over(actor, key, raw, record, sender)
        if taken is None:
            self.heartbeat.drop(token)
            return False
        log.warning("delivery msg_id=%s taking the customer-service send over from %s after part %d of %d",
                    msg_id_of(key, record), record.owner or "(none)", record.sent or 0, record.total or 0)
        self.tasks.spawn(lambda: self.send_rest(key, sender, token))
        return True

    def send_rest(self, key: str, sender: str, token: int) -> None:
        """Send what is left of the record's parts in order, each recorded as sent before the next; what WeChat
        refuses is kept for pickup. Only while ``sender`` is the record's sender."""
        try:
            while True:
                raw, record = self.states.read(key)
                if raw is None or record is None or record.state is not State.SENDING or record.owner != sender:
                    return  # taken over (this process was thought dead), or gone
                parts = record.kept.parts if record.kept else ()
                trace = record.trace or Trace(msg_id_of(key, record))
                done = record.sent or 0
                outcome = self.cs.send(trace.msg_id, record.openid or "", parts[done]) if done < len(parts) \
                    else Sent.NOTHING
                if outcome is Sent.REFUSED:
                    self._keep_rest(key, raw, record, list(parts[done:]), "refused")
                    return
                if outcome is Sent.UNREACHABLE:  # the message's one line says why; nothing kept, no retry
                    if self.states.unreachable(key, raw, record, UNREACHABLE):
                        self.outcomes.done(trace, "undeliverable", reason=UNREACHABLE, parts=record.total,
                                           answer=record.answer)
                    return
                moved = self.states.part_sent(key, raw, record)
                if moved is None:
                    log.error("delivery msg_id=%s: the sender lost its record while sending", trace.msg_id)
                    return
                if moved.state is State.DELIVERED:
                    if outcome is Sent.NOTHING and not any(cs_payload(p) for p in parts):
                        self.outcomes.done(trace, "customer_service", sent=False,
                                           reason="the late answer was empty", answer=record.answer)
                    else:
                        self.outcomes.done(trace, "customer_service", sent=True, parts=record.total,
                                           answer=record.answer)
                    return
        finally:
            self.heartbeat.drop(token)

    def _keep_rest(self, key: str, raw: str, record: Record, rest: list[Part], why: str) -> None:
        """Parts WeChat refused go to pickup, re-cut so each text ends with the marker."""
        if rest and all(isinstance(p, Text) for p in rest):
            rest = self.parts(Answer.text("\n".join(p.content for p in rest if isinstance(p, Text))),
                              for_pickup=True)
        if self.states.keep_refused(key, raw, record, Answer(tuple(rest))):
            labelled(KEPT, why).inc()
            log.info("delivery msg_id=%s answer kept for pickup (%s, %d part(s))", msg_id_of(key, record), why,
                     len(rest))
        else:
            log.error("delivery msg_id=%s: refused parts could not be kept for pickup", msg_id_of(key, record))
