"""Delivery: exactly one answer per message, across WeChat's 5-second deadline, its retries and dying workers.

WeChat waits ``wechat_timeout_s`` for an answer, then drops the connection and sends the same message again
(``tries`` in all); recognition alone can take longer. So the work runs in the background and every try
waits for it up to ``budget_s``. Per dedupe key the store holds two expiring keys:

- ``dl:<key>``: the job record (bot/delivery/record.py): ``running`` (owner) → ``done`` (reply) →
  ``delivered`` (passive | retry | customer_service | pickup), or ``pending`` (kept for pickup) →
  ``delivered`` | ``expired``. The owner's process keeps an ``alive:`` key fresh (:mod:`bot.delivery.leases`):
  when a worker dies, the next try of the message (or the sweeper) finds the owner dead and takes over;
- ``dl:<key>:tries``: how many retries have arrived, so the last try knows it is the last.

Every transition that decides who answers or who runs is one ``add`` / ``compare_and_set`` on the record
(bot/delivery/ledger.py): the winner answers, every other try answers ``success``. A job finishes only while
it still owns its record. Answers no try can carry go out late (bot/delivery/late.py): by customer service
or kept for pickup (bot/delivery/pickup.py); the sweeper (bot/delivery/sweeper.py) finds those no request
will come for.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from bot.core.envelope import Inbound
from bot.core.pipeline import SUCCESS, Pipeline
from bot.core.services import Services
from bot.delivery.answer import Answerer
from bot.delivery.customer_service import CustomerService
from bot.delivery.executors import Executor, Job, ThreadExecutor
from bot.delivery.late import LateAnswers
from bot.delivery.leases import dropped_on_error, heartbeat, is_alive
from bot.delivery.ledger import Ledger, closed
from bot.delivery.outcome import Outcomes
from bot.delivery.parts import remainder
from bot.delivery.pickup import Pickup
from bot.delivery.record import DELIVERED, DONE, FINAL, RUNNING, Record, dedupe_key, inbound_from_xml, msg_id_of
from bot.delivery.sweeper import OpenRecords, Sweeper
from bot.ops.trace import Trace
from bot.store import StoreError

log = logging.getLogger("bot.delivery")


class Claim(NamedTuple):
    """A job its claimer runs itself, in the request thread: the record as claimed and its heartbeat hold."""

    key: str
    record: Record
    raw: str  # the record as written: the CAS to delivered compares with it
    token: int
    kept: bool = True  # the user may have answers kept for pickup (False: the claim saw none)


class Delivery:
    """What the webhook delivers through: dedupe, run the job in the executor, answer each try as the mode says."""

    def __init__(self, pipeline: Pipeline, services: Services, *, executor: Executor | None = None,
                 poll_s: float = 0.05, cs_retries: int = 2, cs_backoff_s: float = 0.5,
                 hold_margin_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.pipeline, self.store, self.client = pipeline, services.store, services.client
        self.config = config = pipeline.config.reply
        self.poll_s, self.clock = poll_s, clock
        # A job in another process or machine is polled for: every poll_s at first, backing off to at most 1/18
        # of the budget (0.25 s), so hundreds of waiting tries do not turn into a read storm on the store.
        self.poll_max_s = max(poll_s, min(0.25, config.budget_s / 18))
        # A held try answers this long after WeChat should have dropped it: WeChat's timer is only known to be
        # "5 s", and an answer that reaches it in time ends the retries with nothing shown.
        self.hold_margin_s = max(0.1, 0.1 * config.wechat_timeout_s) if hold_margin_s is None else hold_margin_s
        self.ledger = Ledger(self.store, config, self.hold_margin_s,
                             Outcomes(self.client, self.store, pipeline.config.wechat.appid))
        self.cs = CustomerService(self.store, self.client, config, pipeline.config.wechat.appid,
                                  retries=cs_retries, backoff_s=cs_backoff_s)
        self.pickup = Pickup(self.ledger)
        self.late = LateAnswers(self.ledger, self.cs, self.pickup, config)
        self.answerer = Answerer(self.ledger, self.cs, self.pickup, self.late, config)
        self.executor = executor or ThreadExecutor(self.run, config.threads)
        # jobs of this process, and the rest of inline jobs whose answer streams, run on these threads
        self.threads = self.executor if isinstance(self.executor, ThreadExecutor) else ThreadExecutor(
            self.run, config.threads)
        self.open_records = OpenRecords(self.ledger, self.late, self.take_over, config.lease_s)
        self.sweeper = Sweeper(self, config.sweep_every_s)
        self.sweeper.ensure_running()  # in every process that builds a bot: a dead worker's job is found even if
        # no message ever reaches this one (a gunicorn worker builds it at boot; RQ workers in run_worker)
        self._events: dict[str, threading.Event] = {}
        self._local: set[str] = set()  # keys whose job runs in this process
        self._holds: dict[str, int] = {}  # owner -> heartbeat token, for jobs submitted in this process
        self._running: dict[str, tuple[float, str, str]] = {}  # key -> (started, openid, msg_id) of jobs here
        self._typed: set[str] = set()
        self._lock = threading.Lock()

    # -- the web side: one call per try -----------------------------------------------------------
    def deliver(self, inbound: Inbound) -> str:
        """Answer one try of a message: its reply XML if this try delivers it, else ``success``."""
        started, cfg, key = self.clock(), self.config, dedupe_key(inbound)
        self.sweeper.ensure_running()
        try:
            attempt, claim = self._claim(key, inbound)
            reply = None
            if claim is not None:  # nothing slow to wait for: run it here, without a thread hand-off
                reply = self._run_inline(claim, inbound, started + cfg.budget_s)
            if reply is None:
                reply = self._await(key, inbound, started + cfg.budget_s, answer=True, attempt=attempt)
            if reply is not None:
                outcome = "passive" if reply != SUCCESS else "answered-elsewhere"
            elif cfg.mode == "customer_service" or attempt >= cfg.tries or self._streams_to_cs(key):
                outcome, reply = "last-chance", self._last_chance(key, inbound, attempt)
            else:  # hold until WeChat has dropped this try, so that it retries (any answer would end it)
                self._await(key, inbound, started + cfg.wechat_timeout_s + self.hold_margin_s, answer=False)
                outcome, reply = "held", SUCCESS
        except StoreError as exc:
            log.error("delivery store failed msg_id=%s: %s; answering in this request without dedupe",
                      inbound.msg_id, exc)
            return self.pipeline.answer(inbound)
        log.debug("delivery msg_id=%s try=%d outcome=%s ms=%.0f", inbound.msg_id, attempt, outcome,
                  (self.clock() - started) * 1000)
        return reply

    def _run_inline(self, claim: Claim, inbound: Inbound, until: float) -> str | None:
        """Run a claimed job in this request and, in time, go straight from running to delivered with one
        CAS on the record as claimed. None: too late or the record moved (then the usual path decides)."""
        key, owner = claim.key, claim.record.owner
        self._started(key, inbound)
        offloaded: list[bool] = []

        def offload(rest: Callable[[], tuple[str, Trace]]) -> None:  # a streamed answer: read it off this thread
            offloaded.append(True)
            self.threads.spawn(lambda: self._continue(key, owner, claim.token, rest))
        try:
            reply_xml, trace = self.pipeline.process(inbound, self._progress(key, owner), offload)
            if offloaded:
                return None  # this try waits for it like for any background job
            if self.clock() < until:
                done = claim.record.but(state=DONE, reply=reply_xml, trace=trace, push=None, owner=None)
                reply = self.answerer.answer(key, claim.raw, done, inbound, path="passive", tries=1,
                                             nothing_kept=not claim.kept)
                if reply is not None:
                    return reply
            self._finish(key, reply_xml, trace, owner)
            return None
        finally:
            if not offloaded:
                self._ended(key)
                heartbeat().drop(claim.token)
                self._wake(key)

    def _continue(self, key: str, owner: str | None, token: int, rest: Callable[[], tuple[str, Trace]]) -> None:
        """The rest of an inline job whose handler streams, on a thread of this process."""
        try:
            self._finish(key, *rest(), owner)
        finally:
            self._ended(key)
            heartbeat().drop(token)
            self._wake(key)

    def _progress(self, key: str, owner: str | None) -> Callable[[str], None]:
        """For a streamed answer: publish its complete sentences in the record, for the try that must answer."""
        def publish(text: str) -> None:
            try:
                raw, record = self.ledger.read(key)
                if raw is not None and record is not None and record.state == RUNNING and record.owner == owner:
                    self.ledger.swap(key, raw, record.but(partial=text))
            except StoreError as exc:  # the whole answer still comes at the end
                log.warning("delivery %s: could not publish a streamed answer's progress: %s", key, exc)
        return publish

    def _claim(self, key: str, inbound: Inbound) -> tuple[int, Claim | None]:
        """The first try creates the record and starts the job; later tries join it. Returns the try number,
        and the claim when the caller should run the job itself: messages without voice need no recognition,
        so the request thread runs them (a thread hand-off cost more than the job)."""
        created = time.time()
        owner, token = self._hold(created)
        record = Record(RUNNING, created, owner, openid=inbound.message.source, push=inbound.xml)
        with dropped_on_error(token):
            raw, kept = self.ledger.add(key, record)
        if raw is not None and inbound.message.type != "voice":
            with self._lock:
                self._local.add(key)
            return 1, Claim(key, record, raw, token, kept)
        if raw is not None:
            try:
                self._start(key, inbound.xml, owner, token)
            except Exception as exc:  # e.g. the RQ queue is unreachable: forget the claim, answer inline
                heartbeat().drop(token)
                with self._lock:
                    self._holds.pop(owner, None)
                self._wake(key)
                self.store.compare_and_delete(self.ledger.rkey(key), raw)
                raise StoreError(f"cannot start the job: {type(exc).__name__}: {exc}") from exc
            return 1, None
        heartbeat().drop(token)
        return 1 + self.store.incr(f"{self.ledger.rkey(key)}:tries", ttl=self.config.state_ttl_s), None

    def _hold(self, created: float) -> tuple[str, int]:
        """A new owner in this process, kept alive by its heartbeat. A job queued for RQ is vouched for by the
        process that queued it until WeChat's tries are over (the RQ worker takes it over when it starts)."""
        until = None
        if not self.executor.local:
            until = self.clock() + max(0.0, self.ledger.last_chance(created) - time.time())
        token = heartbeat().hold(self.store, self.config.lease_s, until=until)
        return heartbeat().owner("thread" if self.executor.local else "queue"), token

    def _start(self, key: str, push_xml: str, owner: str, token: int) -> None:
        """Submit the job (a job of this process's threads is woken for, not polled for)."""
        if self.executor.local:
            with self._lock:
                self._local.add(key)
                self._holds[owner] = token
        self.executor.submit(Job(key, push_xml, owner))

    def take_over(self, key: str, raw: str, record: Record, push: str | None = None) -> bool:
        """The job is running but its owner's process is dead: run it again, as the new owner (from the push
        in the record, or ``push``: the try that found it). A record younger than a lease is left alone: its
        owner's first heartbeat may not be written yet."""
        push = record.push or push
        if time.time() < record.created + self.config.lease_s or not push:
            return False
        if record.owner is not None and is_alive(self.store, record.owner):
            return False
        owner, token = self._hold(record.created)
        with dropped_on_error(token):
            won = self.ledger.swap(key, raw, record.but(owner=owner))
        if not won:
            heartbeat().drop(token)  # finished, or taken over by another try, meanwhile
            return False
        log.warning("delivery msg_id=%s taking the job over: its owner %s stopped renewing its heartbeat",
                    msg_id_of(key, record), record.owner or "(none)")
        self._start(key, push, owner, token)
        return True

    def _await(self, key: str, inbound: Inbound, until: float, *, answer: bool, attempt: int = 1) -> str | None:
        """Wait until ``until`` for the job. ``answer``: win done→delivered (passive at the first try, retry at
        a later one) and return the reply XML. ``success`` when another try or a late path already delivered
        it; None at ``until``."""
        next_owner_check, event, poll = 0.0, None, self.poll_s
        try:
            while True:
                event = self._event(key)
                raw, record = self.ledger.read(key)
                now = self.clock()
                if raw is None or record is None:  # the store lost it (flushed): start over
                    _, claim = self._claim(key, inbound)
                    if claim is not None:
                        reply = self._run_inline(claim, inbound, until if answer else 0.0)
                        if reply is not None:
                            return reply
                    continue
                if record.state == DELIVERED and record.via == "passive" and answer and now < until:
                    return record.reply or SUCCESS  # WeChat retries only a try whose answer it did not get
                if record.state in FINAL or record.state == "pending":
                    return SUCCESS
                if record.state == DONE and answer and now < until:
                    reply = self.answerer.answer(key, raw, record, inbound,
                                                 path="passive" if attempt == 1 else "retry", tries=attempt)
                    if reply is not None:
                        return reply
                    continue
                if record.state == RUNNING and now >= next_owner_check:
                    self.take_over(key, raw, record, inbound.xml)
                    next_owner_check = now + self.config.lease_s / 4
                if now >= until:
                    return None
                if key in self._local or record.state == DONE:  # woken by the job / nothing to poll for
                    wait = self.config.lease_s / 4
                else:
                    wait, poll = poll, min(poll * 1.5, self.poll_max_s)
                event.wait(max(0.0, min(until - now, wait)))
        finally:
            with self._lock:
                if key not in self._local and self._events.get(key) is event:
                    del self._events[key]

    def _event(self, key: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(key, threading.Event())

    def _wake(self, key: str) -> None:
        with self._lock:
            event = self._events.pop(key, None)
            self._local.discard(key)
        if event is not None:
            event.set()

    def _streams_to_cs(self, key: str) -> bool:
        """A streamed answer has sentences to show and the rest can follow by customer service: this try is
        the one that must answer (holding it would only delay what is already written)."""
        _, record = self.ledger.read(key)
        return (record is not None and record.state == RUNNING
                and bool((record.partial or "")[record.shown or 0:].strip()) and self.cs.available(probe=True))

    def _last_chance(self, key: str, inbound: Inbound, attempt: int) -> str:
        """No later try will come: a result that is done goes out now; else the job must send it late, and
        this try shows the user's kept answers (and, without customer service, the pickup notice)."""
        while True:
            raw, record = self.ledger.read(key)
            if raw is None or record is None or record.state in FINAL or record.state == "pending":
                return SUCCESS
            if record.state == DONE:  # done a moment after the budget: WeChat still waits for this try
                reply = self.answerer.answer(key, raw, record, inbound, path="retry" if attempt > 1 else "passive",
                                             tries=attempt)
                if reply is not None:
                    return reply
                continue
            if (record.partial or "")[record.shown or 0:].strip():  # a streamed answer: show what is written
                reply = self.answerer.partial(key, raw, record, inbound)
                if reply is not None:
                    return reply
                continue
            if record.late or self.ledger.swap(key, raw, record.but(late=True)):
                return self.answerer.meanwhile(key, inbound)

    # -- the job side: in a thread of this process, or in an RQ worker ----------------------------
    def run(self, job: Job) -> None:
        """Answer the message (recognition + routing) and record or send the result."""
        with self._lock:
            token = self._holds.pop(job.owner, None)
        owner = job.owner
        if token is None:  # an RQ job: take the record over from the process that queued it
            token = heartbeat().hold(self.store, self.config.lease_s)
            owner = heartbeat().owner("job")
            with dropped_on_error(token):
                adopted = self._adopt(job, owner)
            if not adopted:
                heartbeat().drop(token)
                return
        else:
            with dropped_on_error(token):
                _, record = self.ledger.read(job.key)
            if record is None or record.state != RUNNING or record.owner != job.owner:
                heartbeat().drop(token)  # finished, or taken over, while it waited for a thread
                self._wake(job.key)
                return
        inbound = inbound_from_xml(job.push_xml)
        self._started(job.key, inbound)
        try:
            self._finish(job.key, *self.pipeline.process(inbound, self._progress(job.key, owner)), owner)
        finally:
            self._ended(job.key)
            heartbeat().drop(token)
            self._wake(job.key)

    def _adopt(self, job: Job, owner: str) -> bool:
        """Swap the queued job's owner for this worker's; False if another run owns it or it is finished."""
        while True:
            raw, record = self.ledger.read(job.key)
            if raw is None or record is None or record.state != RUNNING or record.owner != job.owner:
                log.info("delivery %s: finished or owned by another run; skipping this one", job.key)
                return False
            if self.ledger.swap(job.key, raw, record.but(owner=owner)):
                return True

    def _finish(self, key: str, reply_xml: str, trace: Trace, owner: str | None) -> None:
        """Record the result for a waiting try, or, past the last chance, send or keep it: one CAS decides,
        and only while this run still owns the record (a displaced run's result is dropped)."""
        while True:
            raw, record = self.ledger.read(key)
            if raw is None or record is None or record.state != RUNNING or record.owner != owner:
                log.info("delivery msg_id=%s: this run no longer owns the job (%s): result dropped",
                         trace.get("msg_id", key), record.state if record else "expired")
                return
            done = record.but(state=DONE, reply=reply_xml, trace=trace, push=None, owner=None, partial=None)
            if record.shown:  # a try showed the beginning of this streamed answer: the rest is what is left
                rest = remainder(reply_xml, record.shown)
                if rest is None:
                    if self.ledger.swap(key, raw, done.but(state=DELIVERED, via="passive", reply=None), closed(key)):
                        self.ledger.done(trace, "passive")
                        return
                    continue
                done = done.but(reply=rest)
            if self.ledger.overdue(record):
                if self.late.dispatch(key, raw, done):
                    return
            elif self.ledger.swap(key, raw, done):
                return

    def _started(self, key: str, inbound: Inbound) -> None:
        with self._lock:
            self._running[key] = (self.clock(), inbound.message.source, str(inbound.msg_id))

    def _ended(self, key: str) -> None:
        with self._lock:
            self._running.pop(key, None)
            self._typed.discard(key)

    # -- the sweeper's tick ---------------------------------------------------------------------------
    def sweep(self) -> bool:
        """Typing for long jobs here; then every open record whose time has come. True while busy."""
        now = self.clock()
        with self._lock:
            slow = [(k, v) for k, v in self._running.items()
                    if k not in self._typed and now - v[0] >= self.config.typing_after_s]
            self._typed.update(k for k, _ in slow)
            busy = bool(self._running)
        for _, (_, openid, msg_id) in slow:
            self.cs.typing(msg_id, openid)
        return self.open_records.sweep() or busy

    def close(self) -> None:
        self.sweeper.stop()
        self.executor.close()
