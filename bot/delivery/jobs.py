"""The job side of delivery: who runs a message's job, and what the job records when it is done.

A job runs in the request of its first try (messages without voice: nothing slow to wait for), on a thread
of this process, or on an RQ worker. Whichever it is, it owns the record while it runs (``owner``, kept alive
by the heartbeat) and finishes only while it still owns it: a run whose owner was declared dead and taken
over never delivers. Finishing in time makes the record ``done`` for a try to carry; past the last try, the
job sends the answer late itself (bot/delivery/late.py).
"""
from __future__ import annotations

import logging
import threading
from typing import NamedTuple

from bot.core.envelope import Inbound
from bot.core.pipeline import Answered, Pipeline, Processed, Streaming
from bot.core.stream import Progress
from bot.delivery.executors import Executor, Job, Tasks
from bot.delivery.late import LateAnswers
from bot.delivery.leases import Heartbeat, dropped_on_error
from bot.delivery.outcome import Outcomes
from bot.delivery.parts import remainder
from bot.delivery.record import Record, State, inbound_from_xml, msg_id_of
from bot.delivery.states import Actor, States
from bot.delivery.wakeups import Wakeups
from bot.ops.clock import Clock
from bot.store import StoreError

log = logging.getLogger("bot.delivery")


class Claim(NamedTuple):
    """A job its claimer runs itself, in the request thread: the record as claimed and its heartbeat hold."""

    key: str
    record: Record
    raw: str  # the record as written: the move to delivered compares with it
    token: int
    kept: bool = True  # the user may have answers kept for pickup (False: the claim saw none)


class Jobs:
    def __init__(self, pipeline: Pipeline, states: States, late: LateAnswers, outcomes: Outcomes,
                 heartbeat: Heartbeat, executor: Executor, tasks: Tasks, wakeups: Wakeups, clock: Clock) -> None:
        self.pipeline, self.states, self.late, self.outcomes = pipeline, states, late, outcomes
        self.heartbeat, self.executor, self.tasks, self.wakeups, self.clock = heartbeat, executor, tasks, wakeups, clock
        self.lease_s = states.config.lease_s
        self._holds: dict[str, int] = {}  # owner -> heartbeat token, for jobs submitted in this process
        self._running: dict[str, tuple[float, str, str]] = {}  # key -> (started, openid, msg_id) of jobs here
        self._typed: set[str] = set()
        self._lock = threading.Lock()

    # -- owning a job -----------------------------------------------------------------------------------
    def hold(self, created: float) -> tuple[str, int]:
        """A new owner in this process, kept alive by its heartbeat. A job queued for RQ is vouched for by the
        process that queued it until WeChat's tries are over (the RQ worker takes it over when it starts)."""
        until = None
        if not self.executor.local:
            until = self.clock.monotonic() + max(0.0, self.states.last_chance(created) - self.clock.time())
        token = self.heartbeat.hold(until=until)
        return self.heartbeat.owner("thread" if self.executor.local else "queue"), token

    def start(self, key: str, push_xml: str, owner: str, token: int) -> None:
        """Submit the job (a job of this process's threads is woken for, not polled for)."""
        if self.executor.local:
            self.wakeups.running_here(key)
            with self._lock:
                self._holds[owner] = token
        self.executor.submit(Job(key, push_xml, owner))

    def forget(self, owner: str, token: int) -> None:
        """A job that could not be started."""
        self.heartbeat.drop(token)
        with self._lock:
            self._holds.pop(owner, None)

    def take_over(self, actor: Actor, key: str, raw: str, record: Record, push: str | None = None) -> bool:
        """The job is running but its owner's process is dead: run it again, as the new owner (from the push
        in the record, or ``push``: the try that found it). An owner younger than a lease is left alone: its
        first heartbeat may not be written yet."""
        push = record.push or push
        if not self.states.owned_long_enough(record) or not push:
            return False
        if record.owner is not None and self.heartbeat.is_alive(record.owner):
            return False
        owner, token = self.hold(record.created)
        with dropped_on_error(self.heartbeat, token):
            won = self.states.take_over(actor, key, raw, record.but(push=push), owner)
        if won is None:
            self.heartbeat.drop(token)  # finished, or taken over by another try, meanwhile
            return False
        log.warning("delivery msg_id=%s taking the job over: its owner %s stopped renewing its heartbeat",
                    msg_id_of(key, record), record.owner or "(none)")
        self.start(key, push, owner, token)
        return True

    # -- running it ---------------------------------------------------------------------------------------
    def run(self, job: Job) -> None:
        """Answer the message (recognition + routing) and record or send the result (the executors' entry)."""
        begun = self.begin(job)
        if begun is None:
            return
        owner, token = begun
        try:
            inbound = inbound_from_xml(job.push_xml)
            _, record = self.states.read(job.key)
            if record is not None:
                inbound.waited_s = record.waited or 0.0  # for its line
                # the message came then: its recognizers share WeChat's clock from there
                inbound.arrived = self.clock.monotonic() - max(0.0, self.clock.time() - record.created)
            self._started(job.key, inbound)
            self.finish(job.key, self._read(job.key, owner, self.pipeline.process(inbound)), owner)
        finally:
            self.ended(job.key, token)

    def begin(self, job: Job) -> tuple[str, int] | None:
        """The run's owner and heartbeat hold, or None when the job is not this run's to do (finished, or taken
        over, while it waited for a thread; another RQ worker took it)."""
        with self._lock:
            token = self._holds.pop(job.owner, None)
        if token is None:  # an RQ job: take the record over from the process that queued it
            token = self.heartbeat.hold()
            owner = self.heartbeat.owner("job")
            with dropped_on_error(self.heartbeat, token):
                adopted = self._adopt(job, owner)
            if not adopted:
                self.heartbeat.drop(token)
                return None
            return owner, token
        with dropped_on_error(self.heartbeat, token):
            _, record = self.states.read(job.key)
        if record is None or record.state is not State.RUNNING or record.owner != job.owner:
            self.heartbeat.drop(token)
            self.wakeups.wake(job.key)
            return None
        return job.owner, token

    def run_inline(self, claim: Claim, inbound: Inbound) -> Processed:
        """Run a claimed job in the request of its first try. A streamed answer is read on the pool from here
        on (the try waits for it like for any job); the caller ends any other with :meth:`ended`."""
        self._started(claim.key, inbound)
        return self.read_later(claim, self.pipeline.process(inbound))

    def run_fast(self, key: str, inbound: Inbound) -> Processed:
        """Run a fast handler in the request of its first try, nothing written yet (bot/delivery/fast.py); the
        caller ends it with :meth:`ended` (its claim's token, once the watchdog or the try wrote one)."""
        self._started(key, inbound)
        return self.pipeline.process(inbound)

    def read_later(self, claim: Claim, processed: Processed) -> Processed:
        """A streamed answer of a job run in its request is read on the pool from here on (its try waits for it
        like for any job), and that read ends the job."""
        if isinstance(processed, Streaming):
            owner = claim.record.owner

            def read_rest() -> None:
                try:
                    self.finish(claim.key, self._read(claim.key, owner, processed), owner)
                finally:
                    self.ended(claim.key, claim.token)
            self.tasks.spawn(read_rest)
        return processed

    def _read(self, key: str, owner: str | None, processed: Processed) -> Answered:
        if not isinstance(processed, Streaming):
            return processed
        return processed.read(self.progress(key, owner) if processed.shows_progress else None)

    def progress(self, key: str, owner: str | None) -> Progress:
        """For a streamed answer: publish its complete sentences in the record, for the try that must answer."""
        def publish(text: str) -> None:
            try:
                raw, record = self.states.read(key)
                if raw is not None and record is not None and record.state is State.RUNNING and record.owner == owner:
                    self.states.progress(key, raw, record, text)
            except StoreError as exc:  # the whole answer still comes at the end
                log.warning("delivery %s: could not publish a streamed answer's progress: %s", key, exc)
        return publish

    def _adopt(self, job: Job, owner: str) -> bool:
        """Swap the queued job's owner for this worker's; False if another run owns it or it is finished."""
        while True:
            raw, record = self.states.read(job.key)
            if raw is None or record is None or record.state is not State.RUNNING or record.owner != job.owner:
                log.info("delivery %s: finished or owned by another run; skipping this one", job.key)
                return False
            if self.states.adopt(job.key, raw, record, owner):
                return True

    def finish(self, key: str, answered: Answered, owner: str | None) -> None:
        """Record the answer for a waiting try, or, past the last chance, send or keep it: one move decides,
        and only while this run still owns the record (a displaced run's answer is dropped)."""
        while True:
            raw, record = self.states.read(key)
            if raw is None or record is None or record.state is not State.RUNNING or record.owner != owner:
                log.info("delivery msg_id=%s: this run no longer owns the job (%s): answer dropped",
                         answered.trace.msg_id, record.state.value if record else "expired")
                return
            answer, trace = answered.answer, answered.trace
            if record.seen:  # a try showed the beginning of this streamed answer: the rest is what is left
                rest = remainder(answer, record.seen)
                if rest is None:
                    if self.states.finish_shown(key, raw, record):
                        self.outcomes.done(trace, "passive", answer=answer)
                        return
                    continue
                answer = rest
            if self.states.overdue(record):
                if self.late.dispatch(Actor.JOB, key, raw, record.but(answer=answer, trace=trace)):
                    return
            elif self.states.finish(key, raw, record.but(trace=trace), answer):
                return

    # -- this process's jobs: for the typing indicator -----------------------------------------------------
    def _started(self, key: str, inbound: Inbound) -> None:
        with self._lock:
            self._running[key] = (self.clock.monotonic(), inbound.message.source, str(inbound.msg_id))

    def ended(self, key: str, token: int | None) -> None:
        """The job of ``key`` ended here (however it ended): stop vouching for it (``token``: None for a fast
        handler that never needed its process vouched for), wake its tries."""
        with self._lock:
            self._running.pop(key, None)
            self._typed.discard(key)
        if token is not None:
            self.heartbeat.drop(token)
        self.wakeups.wake(key)

    def running_long(self, after_s: float) -> list[tuple[str, str]]:
        """``(msg_id, openid)`` of this process's jobs running longer than ``after_s`` not yet told about."""
        now = self.clock.monotonic()
        with self._lock:
            slow = [(k, v) for k, v in self._running.items() if k not in self._typed and now - v[0] >= after_s]
            self._typed.update(k for k, _ in slow)
        return [(msg_id, openid) for _, (_, openid, msg_id) in slow]

    def busy(self) -> bool:
        with self._lock:
            return bool(self._running)
