"""Delivery: exactly one answer per message, across WeChat's 5-second deadline and its retries.

WeChat waits ``wechat_timeout_s`` for an answer, then drops the connection and sends the same message again
(``tries`` in all); recognition alone can take longer. So the work runs in the background and every try
waits for it up to ``budget_s``. Per dedupe key the store holds two expiring keys:

- ``dl:<key>``: the job record (JSON): ``running`` (owner) → ``done`` (reply) → ``delivered`` (passive |
  customer_service), or ``undeliverable``. The owner's process keeps an ``alive:`` key fresh
  (:mod:`bot.delivery.leases`): when a worker dies, the next try of the message finds the owner dead and takes the job
  over by swapping the owner;
- ``dl:<key>:tries``: how many retries have arrived, so the last try knows it is the last.

Every transition that decides who answers or who runs is one ``add`` / ``compare_and_set`` on the record: the
winner answers, every other try answers ``success``. That is the whole exactly-once guarantee, on any
backend. A voice message answered at its first try costs three writes (with SQLite each takes the database
lock); a message without voice runs in the request thread and costs two (claimed, then straight to delivered).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, NamedTuple

from bot.delivery.customer_service import cs_payload, send_late
from bot.delivery.record import DELIVERED, DONE, RUNNING, UNDELIVERABLE, Record, dedupe_key, inbound_from_xml
from bot.core.envelope import Inbound
from bot.core.pipeline import SUCCESS, Pipeline
from bot.core.services import Services
from bot.delivery.executors import Executor, Job, ThreadExecutor
from bot.delivery.leases import dropped_on_error, heartbeat, is_alive
from bot.ops.trace import Trace, emit, new_trace
from bot.store import StoreError

log = logging.getLogger("bot.delivery")


class Claim(NamedTuple):
    """A job its claimer runs itself, in the request thread: the record as claimed and its heartbeat hold."""

    key: str
    record: Record
    raw: str  # the record as written: the CAS to delivered compares with it
    token: int


class Delivery:
    """What the webhook delivers through: dedupe, run the job in the executor, answer each try as the mode says."""

    def __init__(self, pipeline: Pipeline, services: Services, *, executor: Executor | None = None,
                 poll_s: float = 0.05, cs_retries: int = 2, cs_backoff_s: float = 0.5,
                 hold_margin_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.pipeline, self.store, self.client = pipeline, services.store, services.client
        self.config = config = pipeline.config.reply
        self.poll_s, self.cs_retries, self.cs_backoff_s, self.clock = poll_s, cs_retries, cs_backoff_s, clock
        # A job in another process or machine is polled for: every poll_s at first, backing off to at most 1/18
        # of the budget (0.25 s), so hundreds of waiting tries do not turn into a read storm on the store.
        self.poll_max_s = max(poll_s, min(0.25, config.budget_s / 18))
        # A held try answers this long after WeChat should have dropped it: WeChat's timer is only known to be
        # "5 s", and an answer that reaches it in time ends the retries with nothing shown.
        self.hold_margin_s = max(0.1, 0.1 * config.wechat_timeout_s) if hold_margin_s is None else hold_margin_s
        self.executor = executor or ThreadExecutor(self.run, config.threads)
        self._events: dict[str, threading.Event] = {}
        self._local: set[str] = set()  # keys whose job runs in this process
        self._holds: dict[str, int] = {}  # owner -> heartbeat token, for jobs submitted in this process
        self._lock = threading.Lock()

    def _k(self, key: str, part: str = "") -> str:
        return f"dl:{key}:{part}" if part else f"dl:{key}"

    # -- the web side: one call per try -----------------------------------------------------------
    def deliver(self, inbound: Inbound) -> str:
        """Answer one try of a message: its reply XML if this try delivers it, else ``success``."""
        started, cfg, key = self.clock(), self.config, dedupe_key(inbound)
        try:
            attempt, claim = self._claim(key, inbound)
            reply = None
            if claim is not None:  # nothing slow to wait for: run it here, without a thread hand-off
                reply = self._run_inline(claim, inbound, started + cfg.budget_s)
            if reply is None:
                reply = self._await(key, inbound, started + cfg.budget_s, answer=True, attempt=attempt)
            if reply is not None:
                outcome = "passive" if reply != SUCCESS else "answered-elsewhere"
            elif cfg.mode == "customer_service" or (cfg.mode == "auto" and attempt >= cfg.tries):
                outcome, reply = self._too_late(key, inbound), SUCCESS
            elif attempt >= cfg.tries:
                outcome, reply = self._give_up(key, inbound, f"no result within any of WeChat's {cfg.tries} tries"), SUCCESS
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
        key = claim.key
        try:
            reply_xml, trace = self.pipeline.process(inbound)
            if self.clock() < until and self.store.compare_and_set(
                    self._k(key), claim.raw, claim.record.but(state=DELIVERED, via="passive", reply=reply_xml).dump(),
                    ttl=self.config.state_ttl_s):
                emit(trace, "passive", tries=1)
                return reply_xml
            self._finish(key, inbound, reply_xml, trace)
            return None
        finally:
            heartbeat().drop(claim.token)
            self._wake(key)

    def _claim(self, key: str, inbound: Inbound) -> tuple[int, Claim | None]:
        """The first try creates the record and starts the job; later tries join it. Returns the try number,
        and the claim when the caller should run the job itself: messages without voice need no recognition,
        so the request thread runs them (a thread hand-off cost more than the job)."""
        created = time.time()
        owner, token = self._hold(created)
        record = Record(RUNNING, created, owner)
        raw = record.dump()
        with dropped_on_error(token):
            claimed = self.store.add(self._k(key), raw, ttl=self.config.state_ttl_s)
        if claimed and inbound.message.type != "voice":
            with self._lock:
                self._local.add(key)
            return 1, Claim(key, record, raw, token)
        if claimed:
            try:
                self._start(key, inbound, owner, token)
            except Exception as exc:  # e.g. the RQ queue is unreachable: forget the claim, answer inline
                heartbeat().drop(token)
                with self._lock:
                    self._holds.pop(owner, None)
                self._wake(key)
                self.store.compare_and_delete(self._k(key), raw)
                raise StoreError(f"cannot start the job: {type(exc).__name__}: {exc}") from exc
            return 1, None
        heartbeat().drop(token)
        return 1 + self.store.incr(self._k(key, "tries"), ttl=self.config.state_ttl_s), None

    def _hold(self, created: float) -> tuple[str, int]:
        """A new owner in this process, kept alive by its heartbeat. A job queued for RQ is vouched for by the
        process that queued it until WeChat's tries are over (the RQ worker takes it over when it starts)."""
        cfg = self.config
        until = None
        if not self.executor.local:
            until = self.clock() + max(0.0, created + cfg.tries * cfg.wechat_timeout_s - time.time())
        token = heartbeat().hold(self.store, cfg.lease_s, until=until)
        return heartbeat().owner("thread" if self.executor.local else "queue"), token

    def _start(self, key: str, inbound: Inbound, owner: str, token: int) -> None:
        """Submit the job (a job of this process's threads is woken for, not polled for)."""
        if self.executor.local:
            with self._lock:
                self._local.add(key)
                self._holds[owner] = token
        self.executor.submit(Job(key, inbound.xml, owner))

    def _take_over(self, key: str, inbound: Inbound, raw: str, record: Record) -> None:
        """The job is running but its owner's process is dead: run it again, as the new owner.

        A record younger than a lease is left alone: its owner's first heartbeat may not be written yet."""
        if time.time() < record.created + self.config.lease_s:
            return
        if record.owner is not None and is_alive(self.store, record.owner):
            return
        owner, token = self._hold(record.created)
        with dropped_on_error(token):
            won = self.store.compare_and_set(self._k(key), raw, record.but(owner=owner).dump(),
                                             ttl=self.config.state_ttl_s)
        if not won:
            heartbeat().drop(token)  # finished, or taken over by another try, meanwhile
            return
        log.warning("delivery msg_id=%s taking the job over: its owner %s stopped renewing its heartbeat",
                    inbound.msg_id, record.owner or "(none)")
        self._start(key, inbound, owner, token)

    def _await(self, key: str, inbound: Inbound, until: float, *, answer: bool, attempt: int = 1) -> str | None:
        """Wait until ``until`` for the job. ``answer``: win done→delivered, emit the message's line (passive at
        the first try, retry at a later one) and return the reply XML.
        ``success`` when another try or the customer-service path already delivered it; None at ``until``."""
        next_owner_check, event, poll = 0.0, None, self.poll_s
        try:
            while True:
                event = self._event(key)
                raw = self.store.get(self._k(key))
                record = Record.load(raw)
                now = self.clock()
                if record is None:  # the store lost it (flushed): start over
                    _, claim = self._claim(key, inbound)
                    if claim is not None:
                        reply = self._run_inline(claim, inbound, until if answer else 0.0)
                        if reply is not None:
                            return reply
                    continue
                if record.state == DELIVERED and record.via == "passive" and answer and now < until:
                    return record.reply or SUCCESS  # WeChat retries only a try whose answer it did not get
                if record.state in (DELIVERED, UNDELIVERABLE):
                    return SUCCESS
                if record.state == DONE and answer and now < until:
                    if self.store.compare_and_set(self._k(key), raw, record.but(
                            state=DELIVERED, via="passive").dump(), ttl=self.config.state_ttl_s):
                        emit(self._trace(record, inbound), "passive" if attempt == 1 else "retry", tries=attempt)
                        return record.reply or SUCCESS
                    continue
                if record.state == RUNNING and now >= next_owner_check:
                    self._take_over(key, inbound, raw, record)
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

    def _settle(self, key: str, decide: Callable[[Record], tuple[Record | None, str]]) -> tuple[str, Record | None]:
        """Read, decide, compare-and-set until the write wins. ``decide(record)`` gives the new record (None:
        nothing to write) and the outcome; a record already delivered or undeliverable is left alone."""
        rkey = self._k(key)
        while True:
            raw = self.store.get(rkey)
            record = Record.load(raw)
            if record is None or record.state in (DELIVERED, UNDELIVERABLE):
                return "answered-elsewhere", None
            new, outcome = decide(record)
            if new is None or self.store.compare_and_set(rkey, raw, new.dump(), ttl=self.config.state_ttl_s):
                return outcome, record

    def _too_late(self, key: str, inbound: Inbound) -> str:
        """No passive answer is possible any more: the job (or this call) sends through customer service."""
        def decide(record: Record) -> tuple[Record | None, str]:
            if record.state == RUNNING:  # the job sends it when it finishes
                return (None if record.late else record.but(late=True)), "customer-service-pending"
            return record.but(state=DELIVERED, via="customer_service", reply=None), "customer-service"

        outcome, record = self._settle(key, decide)
        if outcome == "customer-service" and record is not None:
            # done a moment after the budget: send from here, without delaying this answer
            threading.Thread(target=self._send, args=(inbound.msg_id, inbound.message.source, record.reply,
                                                      self._trace(record, inbound)),
                             name="wvb-cs-send", daemon=True).start()
        return outcome

    def _give_up(self, key: str, inbound: Inbound, reason: str) -> str:
        """Passive mode, last try over: log the message as undeliverable, exactly once."""
        outcome, record = self._settle(key, lambda r: (r.but(state=UNDELIVERABLE, reason=reason, reply=None),
                                                       "undeliverable"))
        if outcome == "undeliverable" and record is not None:
            emit(self._trace(record, inbound), "undeliverable",
                 reason=f"{reason} (mode passive: the customer-service API is off)")
        return outcome

    # -- the job side: in a thread of this process, or in an RQ worker ----------------------------
    def run(self, job: Job) -> None:
        """Answer the message (recognition + routing) and record or send the result."""
        with self._lock:
            token = self._holds.pop(job.owner, None)
        if token is None:  # an RQ job: take the record over from the process that queued it
            token = heartbeat().hold(self.store, self.config.lease_s)
            with dropped_on_error(token):
                adopted = self._adopt(job, heartbeat().owner("job"))
            if not adopted:
                heartbeat().drop(token)
                return
        else:
            with dropped_on_error(token):
                record = Record.load(self.store.get(self._k(job.key)))
            if record is None or record.state != RUNNING or record.owner != job.owner:
                heartbeat().drop(token)  # finished, or taken over, while it waited for a thread
                self._wake(job.key)
                return
        try:
            inbound = inbound_from_xml(job.push_xml)
            self._finish(job.key, inbound, *self.pipeline.process(inbound))
        finally:
            heartbeat().drop(token)
            self._wake(job.key)

    def _adopt(self, job: Job, owner: str) -> bool:
        """Swap the queued job's owner for this worker's; False if another run owns it or it is finished."""
        rkey = self._k(job.key)
        while True:
            raw = self.store.get(rkey)
            record = Record.load(raw)
            if record is None or record.state != RUNNING or record.owner != job.owner:
                log.info("delivery %s: finished or owned by another run; skipping this one", job.key)
                return False
            if self.store.compare_and_set(rkey, raw, record.but(owner=owner).dump(), ttl=self.config.state_ttl_s):
                return True

    def _finish(self, key: str, inbound: Inbound, reply_xml: str, trace: Trace) -> None:
        """Record the result for a waiting try, or, past the last chance, send or drop it: one CAS decides."""
        rkey, cfg = self._k(key), self.config
        while True:
            raw = self.store.get(rkey)
            record = Record.load(raw)
            if record is None or record.state != RUNNING:
                log.info("delivery msg_id=%s finished again (state %s): result dropped", inbound.msg_id,
                         record.state if record else "expired")
                return
            overdue = record.late or time.time() > record.created + cfg.tries * cfg.wechat_timeout_s
            if not overdue:
                new = record.but(state=DONE, reply=reply_xml, trace=trace)
            elif cfg.mode == "passive":
                new = record.but(state=UNDELIVERABLE, reason="result ready after the last try")
            else:
                new = record.but(state=DELIVERED, via="customer_service")
            if self.store.compare_and_set(rkey, raw, new.dump(), ttl=cfg.state_ttl_s):
                break
        if new.state == DELIVERED:
            self._send(inbound.msg_id, inbound.message.source, reply_xml, trace)
        elif new.state == UNDELIVERABLE:
            emit(trace, "undeliverable", reason=f"{new.reason} (mode passive: the customer-service API is off)")

    def _send(self, msg_id: str, openid: str, reply_xml: str | None, trace: Trace) -> None:
        """Send a late reply; it is turned into the customer-service form only here, off the fast path."""
        sent = send_late(self.client, msg_id, openid, cs_payload(reply_xml or ""), retries=self.cs_retries,
                         backoff_s=self.cs_backoff_s)
        emit(trace, "customer_service", sent=sent)

    def _trace(self, record: Record, inbound: Inbound) -> Trace:
        """The job's trace, or (the job has not finished) what the push itself says."""
        return record.trace or new_trace(self.pipeline.config, inbound)

