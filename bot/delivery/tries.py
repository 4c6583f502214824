"""One try of a message: what a request of WeChat's answers, decided on the delivery clock.

A try is written as a generator (:meth:`Tries.play`) that asks its driver for what takes time — ``Wait``
(until a moment or until the job wakes it) and ``RunInline`` (run the claimed job here) — and returns what
the try answers (:class:`~bot.delivery.answer.Say`). The web side drives it with the real clock
(:meth:`bot.delivery.engine.Delivery.deliver`); the schedule-exploring test drives the same code on a fake
clock, resuming each try at moments it chooses.

The rules, per try of a message (README "Delivery"):
- a text or event message's first try runs a fast handler before anything is written (bot/delivery/fast.py:
  answered within ``[reply] fast_path_s``, one write; else claimed at that moment, and on as below);
- the first try claims the record and starts the job (in its own request for messages without voice);
- every try waits for the answer until its budget (``[reply] budget_s`` after it arrived); an answer ready in
  time is its passive reply (moved to ``delivered`` first: exactly one try wins);
- past the budget a try never carries the answer itself: in ``auto`` mode it is held until WeChat has dropped
  it, so that WeChat retries; the try that must answer last (the last try, any try in ``customer_service``
  mode, or one with a streamed answer's sentences to show) shows what it may — the sentences written so far,
  the user's kept answers, the pickup notice — and leaves the answer to the job (customer service or pickup).
"""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Generator
from dataclasses import dataclass

from bot.config import ReplyConfig
from bot.core.answer import Answer
from bot.core.envelope import Inbound
from bot.core.pipeline import Processed, Streaming
from bot.delivery.answer import SUCCESS, Answerer, Say
from bot.delivery.customer_service import CustomerService
from bot.delivery.executors import Timers
from bot.delivery.fast import FastPath, Joined, RunFast
from bot.delivery.jobs import Claim, Jobs
from bot.delivery.late import LateAnswers
from bot.delivery.leases import dropped_on_error
from bot.delivery.record import FINAL, Record, State, dedupe_key
from bot.delivery.states import Actor, States
from bot.delivery.wakeups import Wakeups
from bot.ops.clock import Clock
from bot.ops.metrics import WITHHELD, labelled
from bot.ops.trace import Trace
from bot.store import StoreError

log = logging.getLogger("bot.delivery")


@dataclass(frozen=True)
class Wait:
    """Resume the try at ``until`` (``clock.monotonic()``), or sooner when ``event`` is set."""

    until: float
    event: threading.Event | None = None


@dataclass(frozen=True)
class RunInline:
    """Run the claimed job in this request and send back what the pipeline gave."""

    claim: Claim


Request = Wait | RunInline | RunFast
TryPlay = Generator[Request, Processed | None, Say]


class Tries:
    def __init__(self, states: States, jobs: Jobs, answerer: Answerer, late: LateAnswers, cs: CustomerService,
                 wakeups: Wakeups, clock: Clock, *, hold_margin_s: float, poll_s: float,
                 timers: Timers | None = None) -> None:
        self.states, self.jobs, self.answerer, self.late, self.cs = states, jobs, answerer, late, cs
        self.wakeups, self.clock = wakeups, clock
        # without timers (a caller that plays tries by hand) no fast path: every message is claimed first
        self.fast = None if timers is None else FastPath(states, jobs, jobs.outcomes, timers, clock, self.write_claim)
        self.config: ReplyConfig = states.config
        self.hold_margin_s, self.poll_s = hold_margin_s, poll_s
        # A job in another process or machine is polled for: every poll_s at first, backing off to at most 1/18
        # of the budget (0.25 s), so hundreds of waiting tries do not turn into a read storm on the store.
        self.poll_max_s = max(poll_s, min(0.25, self.config.budget_s / 18))
        # how long after its budget a try still counts as "at" it (a waiting try wakes a little late)
        self.grace_s = min(0.25, (self.config.wechat_timeout_s - self.config.budget_s) / 2)

    def play(self, inbound: Inbound, started: float) -> TryPlay:
        """The try of ``inbound`` that a thread took at ``started`` (``clock.monotonic()``), after it waited
        ``inbound.waited_s`` since WeChat sent it: its budget and WeChat's cut-off run from the sending."""
        cfg, key = self.config, dedupe_key(inbound)
        first_wait = max(inbound.waited_s, inbound.stamp_late_s)  # a first try's timestamp is its own sending
        in_time = started - first_wait + cfg.budget_s > self.clock.monotonic()
        joined: Joined | None = None
        if in_time and self.fast is not None and self.fast.takes(inbound):
            outcome = yield from self.fast.play(key, inbound, self.clock.time() - first_wait, first_wait,
                                                started - first_wait + cfg.budget_s)
            if isinstance(outcome, Say):
                return outcome
            joined = outcome
        if joined is not None:
            attempt, claim = joined.attempt, joined.claim
        else:
            attempt, claim = self.claim(key, inbound, first_wait, in_time=in_time)
        inbound.attempt = attempt
        # a retry carrying its first try's query (timestamp included) was sent about wechat_timeout_s after the
        # try before it: the timestamp still says how long it waited, even before the server accepted it
        retry_wait = max(inbound.waited_s, inbound.stamp_late_s - cfg.wechat_timeout_s * (attempt - 1))
        sent = started - (first_wait if attempt == 1 else retry_wait)
        budget = sent + cfg.budget_s
        if claim is not None:  # nothing slow to wait for: run it here, without a thread hand-off
            processed = joined.processed if joined is not None else (yield RunInline(claim))
            say = self.after_inline(claim, inbound, processed, budget)
            if say is not None:
                return say
        say = yield from self.wait(key, inbound, budget, attempt, answer=True)
        if say is not None:
            return say
        if cfg.mode == "customer_service" or attempt >= cfg.tries or self.streams_to_cs(key):
            # at its budget (the usual case: it waited until then) the try shows what it may; well past it
            # (a handler that ran in this request returned late) WeChat may be gone: it claims nothing
            return self.last_chance(key, inbound, in_time=self.clock.monotonic() <= budget + self.grace_s)
        # hold until WeChat has dropped this try, so that it retries (any answer would end it)
        yield from self.wait(key, inbound, sent + cfg.wechat_timeout_s + self.hold_margin_s, attempt, answer=False)
        return SUCCESS

    def claim(self, key: str, inbound: Inbound, waited: float = 0.0, *, in_time: bool = True
              ) -> tuple[int, Claim | None]:
        """The first try creates the record and starts the job; later tries join it. Returns the try number,
        and the claim when the caller should run the job itself: messages without voice need no recognition,
        so the request thread runs them (a thread hand-off cost more than the job) — unless the try came too
        late for its answer anyway (it waited in the queue), or the account answers late by customer service
        (this try must answer success at its budget, not when a slow handler returns): then a job thread runs
        it, and this one is free."""
        # when WeChat sent it (if this is the first try): its tries' clock starts there
        claim = self.write_claim(key, inbound, self.clock.time() - waited, waited)
        if (claim is not None and inbound.message.type != "voice" and in_time
                and self.config.mode != "customer_service"):
            self.wakeups.running_here(key)
            return 1, claim
        if claim is not None:
            owner, token = claim.record.owner or "", claim.token
            try:
                self.jobs.start(key, inbound.xml, owner, token)
            except Exception as exc:  # e.g. the RQ queue is unreachable: forget the claim, answer inline
                self.jobs.forget(owner, token)
                self.wakeups.wake(key)
                self.states.unclaim(key, claim.raw, claim.record)
                raise StoreError(f"cannot start the job: {type(exc).__name__}: {exc}") from exc
            return 1, None
        return self.states.count_retry(key), None

    def write_claim(self, key: str, inbound: Inbound, created: float, waited: float) -> Claim | None:
        """Create the message's record, running, owned by a new run of this process (held alive by its
        heartbeat): the claim, or None when the record exists (a copy, or an earlier try, made it)."""
        owner, token = self.jobs.hold(created)
        record = Record(State.RUNNING, created, owner, since=self.clock.time(), openid=inbound.message.source,
                        push=inbound.xml, waited=round(waited, 3) or None)
        with dropped_on_error(self.jobs.heartbeat, token):
            raw, kept = self.states.claim(key, record)
        if raw is None:
            self.jobs.heartbeat.drop(token)
            return None
        return Claim(key, record, raw, token, kept)

    def after_inline(self, claim: Claim, inbound: Inbound, processed: Processed | None, budget: float) -> Say | None:
        """The job ran in this request: in time, go straight from running to delivered with one move on the
        record as claimed. None: too late, streamed, or the record moved (the usual path decides)."""
        if isinstance(processed, Streaming) or processed is None:
            return None  # read on the pool from here on: this try waits for it like for any job
        try:
            if self.clock.monotonic() < budget:
                say = self.answerer.answer(claim.key, claim.raw, claim.record, processed.answer, processed.trace,
                                           inbound, via="passive", tries=1, nothing_kept=not claim.kept)
                if say is not None:
                    return say
            elif processed.answer:
                withheld(processed.trace)
            self.jobs.finish(claim.key, processed, claim.record.owner)
            return None
        finally:
            self.jobs.ended(claim.key, claim.token)

    def wait(self, key: str, inbound: Inbound, until: float, attempt: int, *, answer: bool
             ) -> Generator[Request, Processed | None, Say | None]:
        """Wait until ``until`` for the job. ``answer``: carry a done answer passively while ``until`` has not
        passed (passive at the first try, retry at a later one). None at ``until``."""
        next_owner_check, poll = -math.inf, self.poll_s
        event: threading.Event | None = None
        try:
            while True:
                event = self.wakeups.event(key)  # before the read: a wake in between is not lost
                raw, record = self.states.read(key)
                now = self.clock.monotonic()
                if raw is None or record is None:  # the store lost it (flushed): start over
                    _, claim = self.claim(key, inbound)
                    if claim is not None:
                        processed = yield RunInline(claim)
                        say = self.after_inline(claim, inbound, processed, until if answer else -math.inf)
                        if say is not None:
                            return say
                    continue
                in_time = answer and now < until
                if record.state is State.DELIVERED and record.via in ("passive", "retry") and in_time:
                    # WeChat retries only a try whose reply it did not get: this one carries the same reply
                    parts = record.answer.parts if record.answer else ()
                    return Say(parts[0] if parts else None)
                if record.state in FINAL or record.state in (State.PENDING, State.SENDING):
                    return SUCCESS
                if record.state is State.DONE and in_time:
                    say = self.answerer.answer(key, raw, record, record.answer or Answer(),
                                               record.trace or Trace(inbound.msg_id), inbound,
                                               via="passive" if attempt == 1 else "retry", tries=attempt)
                    if say is not None:
                        return say
                    continue
                if record.state is State.RUNNING and now >= next_owner_check:
                    self.jobs.take_over(Actor.TRY, key, raw, record, inbound.xml)
                    next_owner_check = now + self.config.lease_s / 4
                if now >= until:
                    return None
                if key in self.wakeups.local or record.state is State.DONE:  # woken by the job / nothing to poll
                    wait = self.config.lease_s / 4
                else:
                    wait, poll = poll, min(poll * 1.5, self.poll_max_s)
                yield Wait(min(until, now + wait), event)
        finally:
            self.wakeups.done_waiting(key, event)

    def streams_to_cs(self, key: str) -> bool:
        """A streamed answer has sentences to show and the rest can follow by customer service: this try is
        the one that must answer (holding it would only delay what is already written)."""
        _, record = self.states.read(key)
        return (record is not None and record.state is State.RUNNING
                and bool((record.unseen() or "").strip()) and self.cs.available(probe=True))

    def last_chance(self, key: str, inbound: Inbound, *, in_time: bool = True) -> Say:
        """No later try will come, and this one's budget has passed: the answer goes late (the job sends it,
        or this try hands it over when it is done), and this try shows what it may: a streamed answer's
        sentences written so far, the user's kept answers (``in_time`` only: at its budget, not well past
        it), the pickup notice."""
        while True:
            raw, record = self.states.read(key)
            if raw is None or record is None or record.state in FINAL or record.state in (State.PENDING, State.SENDING):
                return SUCCESS
            if record.state is State.DONE:  # done a moment too late for this try: it goes late right away
                if record.trace is not None and record.answer:
                    withheld(record.trace)
                if self.late.dispatch(Actor.TRY, key, raw, record):
                    return self.answerer.meanwhile(key, inbound, with_kept=in_time)
                continue
            if in_time and (record.unseen() or "").strip():  # a stream: show what is written
                say = self.answerer.partial(key, raw, record, inbound)
                if say is not None:
                    return say
                continue
            if record.late or self.states.last_try_passed(key, raw, record):
                return self.answerer.meanwhile(key, inbound, with_kept=in_time)


def withheld(trace: Trace) -> None:
    """A try had the answer but its budget had passed: it goes another way (the line and a metric say so)."""
    trace.withheld = True
    labelled(WITHHELD).inc()
