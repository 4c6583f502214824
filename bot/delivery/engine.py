"""Delivery: exactly one answer per message, across WeChat's 5-second deadline, its retries and dying workers.

WeChat waits ``wechat_timeout_s`` for an answer, then drops the connection and sends the same message again
(``tries`` in all); recognition alone can take longer. So every try waits for the message's job up to
``budget_s`` and the job runs wherever is cheapest (the request itself, a thread, an RQ worker). Per dedupe
key the store holds the message's record (bot/delivery/record.py), and every change of it is one move of the
state table (bot/delivery/states.py): the winner of the move into ``delivered`` answers, every other try
answers ``success``. The parts:

- ``tries``: what one request answers (a generator on the clock, driven here); ``fast``: a text handler that
  answers within ``[reply] fast_path_s`` runs before anything is written, and costs one write;
- ``jobs``: who runs the job, and what it records when done (``leases``: the heartbeat that says its process
  is alive; ``executors``: threads, RQ);
- ``answer``: the passive reply of a try, with the user's kept answers first; ``late``: answers no try can
  carry, by customer service (``customer_service``) or kept for pickup (``pickup``);
- ``sweeper``: records no request will come for; ``background``: the threads of all this, per process.
"""
from __future__ import annotations

import logging
import threading

from bot.core.answer import Part
from bot.core.envelope import Inbound
from bot.core.pipeline import Pipeline
from bot.core.services import Services
from bot.delivery.answer import Answerer, Say
from bot.delivery.background import DeliveryRuntime
from bot.delivery.customer_service import CustomerService
from bot.delivery.executors import Executor, Job, Tasks, ThreadExecutor, Timers
from bot.delivery.fast import RunFast
from bot.delivery.jobs import Jobs
from bot.delivery.late import LateAnswers
from bot.delivery.leases import Heartbeat
from bot.delivery.outcome import Outcomes
from bot.delivery.pickup import Pickup
from bot.delivery.states import States
from bot.delivery.sweeper import OpenRecords
from bot.delivery.tries import RunInline, Tries, TryPlay
from bot.delivery.wakeups import Wakeups
from bot.ops.account import serving
from bot.ops.clock import SYSTEM, Clock
from bot.store import StoreError

log = logging.getLogger("bot.delivery")


class Delivery:
    """What the webhook delivers through: dedupe, run the job, answer each try as the mode says."""

    def __init__(self, pipeline: Pipeline, services: Services, *, executor: Executor | None = None,
                 clock: Clock = SYSTEM, tasks: Tasks | None = None, heartbeat: Heartbeat | None = None,
                 poll_s: float = 0.05, cs_retries: int = 2, cs_backoff_s: float = 0.5,
                 hold_margin_s: float | None = None, timers: Timers | None = None) -> None:
        self.pipeline, self.store, self.clock = pipeline, services.store, clock
        self.config = config = pipeline.config.reply
        # A held try answers this long after WeChat should have dropped it: WeChat's timer is only known to be
        # "5 s", and an answer that reaches it in time ends the retries with nothing shown.
        margin = max(0.1, 0.1 * config.wechat_timeout_s) if hold_margin_s is None else hold_margin_s
        self.states = States(self.store, config, clock, margin)
        self.heartbeat = heartbeat or Heartbeat(self.store, config.lease_s, clock)
        self.account = pipeline.config.account.name
        self.runtime = DeliveryRuntime(self.heartbeat, self.sweep, every_s=config.sweep_every_s, clock=clock,
                                       account=self.account)
        tasks = tasks or self.runtime.tasks
        self.releases = pipeline.speaker.releases
        self.outcomes = outcomes = Outcomes(self.releases)
        self.cs = CustomerService(self.store, services.client, config, pipeline.config.wechat.appid, clock,
                                  retries=cs_retries, backoff_s=cs_backoff_s, kind=pipeline.config.account.kind)
        self.pickup = Pickup(self.states, outcomes)
        self.late = LateAnswers(self.states, self.cs, self.pickup, outcomes, tasks, self.heartbeat, config)
        self.answerer = Answerer(self.states, self.cs, self.pickup, self.late, outcomes, config)
        self.wakeups = Wakeups()
        self.executor = executor or ThreadExecutor(self.run, config.threads)
        self.jobs = Jobs(pipeline, self.states, self.late, outcomes, self.heartbeat, self.executor, tasks,
                         self.wakeups, clock)
        self.tries = Tries(self.states, self.jobs, self.answerer, self.late, self.cs, self.wakeups, clock,
                           hold_margin_s=margin, poll_s=poll_s, timers=timers or self.runtime.timers)
        self.open_records = OpenRecords(self.states, self.late, outcomes, self.jobs.take_over)

    # -- the web side: one call per try -----------------------------------------------------------------
    def deliver(self, inbound: Inbound) -> Part | None:
        """Answer one try of a message: the part of the answer this try carries, or None (``success``)."""
        started = self.clock.monotonic()
        self.runtime.start()
        play = self.tries.play(inbound, started)
        try:
            say = self._drive(play, inbound)
        except StoreError as exc:
            play.close()
            log.error("delivery store failed msg_id=%s: %s; answering in this request without dedupe",
                      inbound.msg_id, exc)
            answer = self.pipeline.answer(inbound)
            return answer.parts[0] if answer.parts else None
        log.debug("delivery msg_id=%s answered=%s ms=%.0f", inbound.msg_id, say.part is not None,
                  (self.clock.monotonic() - started) * 1000)
        return say.part

    def _drive(self, play: TryPlay, inbound: Inbound) -> Say:
        """Run the try on the real clock: wait when it waits, run the job when it runs it here."""
        try:
            request = next(play)
            while True:
                if isinstance(request, RunInline):
                    claim = request.claim
                    try:
                        processed = self.jobs.run_inline(claim, inbound)
                    except BaseException:
                        self.jobs.ended(claim.key, claim.token)
                        raise
                    request = play.send(processed)
                elif isinstance(request, RunFast):
                    run = request.run
                    try:
                        processed = self.jobs.run_fast(run.key, inbound)
                    except BaseException:
                        if self.tries.fast is not None:
                            self.tries.fast.abandon(run)
                        raise
                    request = play.send(processed)
                else:
                    self.clock.wait(request.event or threading.Event(), request.until - self.clock.monotonic())
                    request = play.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # -- the job side: in a thread of this process, or in an RQ worker ----------------------------------
    def run(self, job: Job) -> None:
        self.runtime.start(sweeper=self.executor.local)  # an RQ work horse, forked for this job: a heartbeat
        with serving(self.account):
            self.jobs.run(job)

    # -- the sweeper's tick -------------------------------------------------------------------------------
    def sweep(self) -> bool:
        """Typing for long jobs here, material due for release; then every open record whose time has come.
        True while busy."""
        for msg_id, openid in self.jobs.running_long(self.config.typing_after_s):
            self.cs.typing(msg_id, openid)
        busy = self.jobs.busy()
        self.executor.tick()
        if self.releases is not None:
            self.releases.release_due()
        return self.open_records.sweep() or busy

    def start(self) -> None:
        """The heartbeat and the sweeper in this process (every worker runs one, whether or not a message
        reaches it: a dead worker's job is found anyway)."""
        self.runtime.start()

    def close(self) -> None:
        self.runtime.stop()
        self.executor.close()
