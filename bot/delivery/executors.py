"""Where delivery's work runs: jobs on a thread pool inside each web process or on RQ workers anywhere, and
the rest (streams read after their try, late sends, releases) on the process's bounded pool.

A job is four strings (bot id, dedupe key, push XML, lease owner), so an RQ worker on another machine
rebuilds it from the push alone and the web tier and the recognition tier scale separately. Without Redis
the thread pool needs nothing extra to run.
"""
from __future__ import annotations

import contextvars
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from bot.ops.clock import SYSTEM, Clock

log = logging.getLogger("bot.executor")

RUN_JOB = "bot.worker.run_job"  # what RQ workers import and call (the wiring: it builds whole bots)


@dataclass(frozen=True)
class Job:
    """One message's work: answer the push ``push_xml`` stored under ``key``; ``owner`` holds its lease."""

    key: str
    push_xml: str
    owner: str


class Tasks(Protocol):
    """Runs a piece of work soon, on another thread (a test runs it when it chooses)."""

    def spawn(self, work: Callable[[], None]) -> None: ...


class Timers(Protocol):
    """Runs a piece of work ``delay_s`` from now on the delivery clock, unless cancelled first (a test fires it
    when its clock gets there). ``after`` returns the cancel."""

    def after(self, delay_s: float, work: Callable[[], None]) -> Callable[[], None]: ...


class ThreadPool:
    """A bounded thread pool in this process, created on first use so it never crosses a fork; a crash of
    the work is logged, never lost silently."""

    def __init__(self, threads: int, name: str) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads, self.name = threads, name
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
                self._pid = os.getpid()
            return self._pool

    def spawn(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the pool, in a copy of the caller's context (the account it works for)."""
        def run() -> None:
            try:
                work()
            except Exception:  # the pool would swallow it silently
                log.exception("delivery work crashed")
        self._executor().submit(contextvars.copy_context().run, run)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.shutdown(wait=False)
            self._pool = None


class Executor(ABC):
    """Runs jobs somewhere else than the request thread, so a request can stop waiting at its budget."""

    #: Jobs run in this process: their completion can wake waiters here without polling the store.
    local: bool = False

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Start ``job`` soon; never blocks on the job itself."""

    def close(self) -> None:  # noqa: B027 - optional: most executors hold nothing to close
        """Stop accepting jobs (running ones finish)."""

    def tick(self) -> None:  # noqa: B027 - optional: most executors have nothing to look at
        """The sweeper's tick: look at what the executor watches (queued jobs nobody runs)."""


class ThreadExecutor(Executor):
    """Jobs on a bounded thread pool of this process."""

    local = True

    def __init__(self, run: Callable[[Job], None], threads: int = 32) -> None:
        self.run = run
        self.pool = ThreadPool(threads, "wvb-job")

    def submit(self, job: Job) -> None:
        self.pool.spawn(lambda: self.run(job))

    def close(self) -> None:
        self.pool.close()


class RQExecutor(Executor):
    """Enqueues ``bot.worker.run_job`` on an RQ queue in Redis; ``python -m bot worker`` runs them.

    With no worker listening the jobs only wait, and the messages go unanswered: a job still queued when its
    message's budget (``budget_s``) has passed, with no worker alive on the queue, is one ERROR line with the
    command that starts one (at most one line every ``alert_every_s``). The sweeper's tick looks (:meth:`tick`)."""

    def __init__(self, redis_url: str, queue: str, bot_id: str, *, job_timeout_s: float, ttl_s: float,
                 budget_s: float | None = None, alert_every_s: float = 60.0, clock: Clock = SYSTEM) -> None:
        from redis import Redis
        from rq import Queue
        self.bot_id, self.clock = bot_id, clock
        self.queue = Queue(queue, connection=Redis.from_url(redis_url))
        self.job_timeout_s, self.ttl_s = int(job_timeout_s), int(ttl_s)
        self.budget_s, self.alert_every_s = budget_s, alert_every_s
        self._watched: list[tuple[float, str]] = []  # (when to look, RQ job id), oldest first
        self._lock = threading.Lock()
        self._alerted = float("-inf")

    def submit(self, job: Job) -> None:
        queued = self.queue.enqueue(RUN_JOB, self.bot_id, job.key, job.push_xml, job.owner,
                                    job_timeout=self.job_timeout_s, result_ttl=0, ttl=self.ttl_s,
                                    failure_ttl=self.ttl_s, description=f"answer {job.key} for {self.bot_id}")
        if self.budget_s is not None:
            with self._lock:
                self._watched.append((self.clock.monotonic() + self.budget_s, queued.id))

    def workers(self) -> list[str]:
        """The names of the RQ workers listening on this queue now (their registration not expired)."""
        from rq import Worker
        return sorted(w.name for w in Worker.all(queue=self.queue))

    def tick(self) -> None:
        """Each watched job, at its budget: still queued with no worker alive is the ERROR line."""
        now = self.clock.monotonic()
        with self._lock:
            due = [job_id for when, job_id in self._watched if when <= now]
            self._watched = [(when, job_id) for when, job_id in self._watched if when > now]
        for job_id in due:
            try:
                self._check(job_id, now)
            except Exception as exc:  # Redis down: the store's own errors say so; this is only a hint
                log.debug("RQ watch: cannot look at job %s: %s", job_id, exc)

    def _check(self, job_id: str, now: float) -> None:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job as RQJob
        try:
            waiting = RQJob.fetch(job_id, connection=self.queue.connection).get_status() == "queued"
        except NoSuchJobError:
            return  # done already (results are not kept)
        if not waiting or now - self._alerted < self.alert_every_s or self.workers():
            return
        self._alerted = now
        log.error("RQ: jobs wait on queue %r and no worker is listening: messages go unanswered until one "
                  "runs. Start one with `python -m bot worker --config FILE` (this bot's config file)",
                  self.queue.name)
