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
    """Enqueues ``bot.worker.run_job`` on an RQ queue in Redis; ``python -m bot worker`` runs them."""

    def __init__(self, redis_url: str, queue: str, bot_id: str, *, job_timeout_s: float, ttl_s: float) -> None:
        from redis import Redis
        from rq import Queue
        self.bot_id = bot_id
        self.queue = Queue(queue, connection=Redis.from_url(redis_url))
        self.job_timeout_s, self.ttl_s = int(job_timeout_s), int(ttl_s)

    def submit(self, job: Job) -> None:
        self.queue.enqueue(RUN_JOB, self.bot_id, job.key, job.push_xml, job.owner, job_timeout=self.job_timeout_s,
                           result_ttl=0, ttl=self.ttl_s, failure_ttl=self.ttl_s,
                           description=f"answer {job.key} for {self.bot_id}")
