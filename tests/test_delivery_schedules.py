"""Exactly-once, checked by exploring schedules: Hypothesis plays WeChat, users and bot processes against the
real delivery code on a fake clock, on the memory, SQLite and Redis stores (tests/schedules.py has the world).

Each generated schedule: messages arriving (text answered in the request, voice in the background; answers
short, split, spoken, streamed, or never finished), WeChat's tries 2 and 3 arriving late or not at all, time
passing in steps, jobs finishing or publishing a sentence at any moment, pools and sweepers running,
customer service answering ok / 48001 / 45015 / 45047 / a network error, processes killed (``kill -9``) and
restarted, a process whose heartbeat stalls, the user's next messages. After every step: no part of an answer
shown twice or out of order, no passive reply after its try's budget, no open record nobody will look at, no
live process's job taken over. At the end, once every handler that will finish has and each user has written
until nothing is kept: every answer reached its user whole, or was kept and expired unpicked.

``make test`` explores 120 schedules per mode on the memory store and 25 on SQLite and on Redis (510 in all,
each up to 40 steps; derandomized, so every run explores the same ones); ``SCHEDULES=2000`` explores that many
per store and mode (``make fuzz`` does).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis_support import drop_prefix, require_redis
from schedules import CS_MODES, LEASE, PICKUP_TTL, World

from bot.store import open_store

SCHEDULES = int(os.environ.get("SCHEDULES", "0"))  # 0: the defaults below


def machine_for(make_store, mode: str) -> type[RuleBasedStateMachine]:
    class Schedules(RuleBasedStateMachine):
        world: World

        @initialize(cs_mode=st.sampled_from(CS_MODES))
        def start(self, cs_mode: str) -> None:
            self.store, self.cleanup = make_store()
            self.world = World(self.store, mode, cs_mode)

        def teardown(self) -> None:
            if hasattr(self, "world"):
                problems = self.world.settle()
                self.cleanup()
                assert not problems, "\n".join(problems)

        @rule(user=st.integers(0, 1), proc=st.integers(0, 1), sentences=st.sampled_from([1, 3, 14]),
              voice=st.booleans(), stream=st.booleans(), stuck=st.sampled_from([False] * 5 + [True]),
              spoken=st.booleans())
        def a_user_writes(self, user: int, proc: int, sentences: int, voice: bool, stream: bool, stuck: bool,
                          spoken: bool) -> None:
            self.world.new_message(user, proc, sentences=sentences, voice=voice, stream=stream, stuck=stuck,
                                   spoken=spoken)

        @precondition(lambda self: self.world.retry_due())
        @rule(which=st.integers(0, 7), proc=st.integers(0, 1))
        def wechat_retries(self, which: int, proc: int) -> None:
            due = self.world.retry_due()
            self.world.send_try(due[which % len(due)], proc)

        @rule(seconds=st.sampled_from([0.05, 0.3, 0.6, 1.0, 2.0, 4.6, 4.9, 5.2, LEASE + 0.5, PICKUP_TTL + 1]))
        def time_passes(self, seconds: float) -> None:
            self.world.advance(seconds)

        @precondition(lambda self: any(not r.msg.stuck for r in self.world.runs))
        @rule(which=st.integers(0, 7))
        def a_handler_finishes(self, which: int) -> None:
            runs = [r for r in self.world.runs if not r.msg.stuck]
            self.world.finish_run(runs[which % len(runs)])

        @precondition(lambda self: any(r.msg.stream for r in self.world.runs))
        @rule(which=st.integers(0, 7))
        def a_stream_writes_a_sentence(self, which: int) -> None:
            runs = [r for r in self.world.runs if r.msg.stream]
            self.world.publish(runs[which % len(runs)])

        @precondition(lambda self: any(p.queued or p.tasks for p in self.world.live()))
        @rule(proc=st.integers(0, 1))
        def a_pool_runs_its_next_work(self, proc: int) -> None:
            busy = [p for p in self.world.live() if p.queued or p.tasks]
            p = busy[proc % len(busy)]
            if p.queued:
                self.world.start_queued(p)
            else:
                self.world.run_task(p)

        @rule(proc=st.integers(0, 1))
        def a_sweeper_ticks(self, proc: int) -> None:
            live = self.world.live()
            if live:
                self.world.sweep(live[proc % len(live)])

        @rule(cs_mode=st.sampled_from(CS_MODES))
        def customer_service_changes(self, cs_mode: str) -> None:
            self.world.cs_mode = cs_mode

        @precondition(lambda self: len(self.world.live()) > 1)
        @rule(proc=st.integers(0, 1))
        def kill_9(self, proc: int) -> None:
            self.world.kill(self.world.live()[proc % len(self.world.live())])

        @precondition(lambda self: any(not p.alive for p in self.world.procs))
        @rule()
        def a_worker_restarts(self) -> None:
            self.world.restart(next(i for i, p in enumerate(self.world.procs) if not p.alive))

        @rule(proc=st.integers(0, 1), stalled=st.booleans())
        def a_heartbeat_stalls(self, proc: int, stalled: bool) -> None:
            """A process too busy (or its store too slow) to renew its lease, but alive: its jobs may be taken
            over, and must then never deliver."""
            live = self.world.live()
            if live:
                live[proc % len(live)].stalled = stalled

        @invariant()
        def nothing_twice_nothing_late_nothing_forgotten(self) -> None:
            if hasattr(self, "world"):
                problems = self.world.check()
                assert not problems, "\n".join(problems)

    return Schedules


def memory_store():
    store = open_store("memory://")
    return store, store.close


def sqlite_store(tmp: Path):
    def make():
        store = open_store(f"sqlite:///{tmp / uuid.uuid4().hex}.db")
        return store, store.close
    return make


def redis_store(url: str):
    def make():
        prefix = f"wvbtest:sched:{uuid.uuid4().hex[:12]}:"
        store = open_store(url, prefix=prefix)

        def cleanup() -> None:
            drop_prefix(url, prefix)
            store.close()
        return store, cleanup
    return make


@pytest.mark.parametrize("mode", ["auto", "customer_service", "passive"])
@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_every_schedule_delivers_each_answer_once(backend: str, mode: str, tmp_path: Path) -> None:
    make = {"memory": lambda: memory_store, "sqlite": lambda: sqlite_store(tmp_path),
            "redis": lambda: redis_store(require_redis())}[backend]()
    machine = machine_for(make, mode)
    examples = SCHEDULES or (120 if backend == "memory" else 25)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=40, deadline=None, derandomize=True,
        suppress_health_check=list(HealthCheck)))


# -- three schedules written out: the old defects each one would let through ------------------------------
@pytest.fixture(params=["memory", "sqlite", "redis"])
def world_store(request: pytest.FixtureRequest, tmp_path: Path):
    make = {"memory": lambda: memory_store, "sqlite": lambda: sqlite_store(tmp_path),
            "redis": lambda: redis_store(require_redis())}[request.param]()
    store, cleanup = make()
    yield store
    cleanup()


def test_a_displaced_run_never_finishes_an_answer_its_successor_began(world_store) -> None:
    """A job whose process stalled is taken over; the new run streams and a try shows its first sentence;
    then the old run finishes. Only the owner may finish: the user reads one run's answer, not the old run's
    rest after the new run's beginning (the owner-blind finish)."""
    w = World(world_store, "auto", "ok")
    w.new_message(0, 0, sentences=3, voice=False, stream=True, stuck=False, spoken=True)
    msg, p0, p1 = w.messages[0], w.procs[0], w.procs[1]
    w.start_queued(p0)
    old = w.runs[0]
    w.advance(0.1)
    p0.stalled = True  # alive, still running the job, no longer renewing its lease
    w.advance(6.5)
    w.send_try(msg, 1)  # WeChat's second try: the owner looks dead, the job is taken over
    assert p1.queued, w.record(msg)
    w.start_queued(p1)
    new = next(r for r in w.runs if r.proc is p1)
    w.publish(new)
    w.advance(4.6)  # the second try's budget: it shows the sentence written so far
    assert [v for _, _, v in w.seen[msg.user]] == [f"m{msg.n}s0r2。"], w.seen
    w.finish_run(old)
    w.finish_run(new)
    problems = w.settle()
    assert not problems, problems
    assert [v for _, how, v in w.seen[msg.user]] == [f"m{msg.n}s0r2。", f"m{msg.n}s1r2。m{msg.n}s2r2。"]


@pytest.mark.parametrize("mode", ["customer_service", "auto"])
def test_an_answer_ready_after_the_budget_is_never_the_passive_reply(world_store, mode: str) -> None:
    """A handler that runs in the request returns at 4.9 s, past the 4.5 s budget, with WeChat's connection
    still open for 0.1 s: the try answers as its mode says for a late answer (``success``; or it holds), and
    the answer goes by customer service (or a later try) — not written to a connection WeChat is dropping."""
    w = World(world_store, mode, "ok")
    w.new_message(0, 0, sentences=1, voice=False, stream=False, stuck=False)
    msg = w.messages[0]
    w.advance(4.9)
    w.finish_run(w.runs[0])
    assert not w.check()
    if mode == "auto":  # held, so WeChat retries: the second try carries it
        w.advance(0.7)
        w.send_try(msg, 0)
    problems = w.settle()
    assert not problems, problems
    how = [h for _, h, _ in w.seen[msg.user]]
    assert how == (["customer_service"] if mode == "customer_service" else ["passive"]), w.seen


def test_a_job_taken_while_the_heartbeat_sleeps_keeps_its_process_alive(world_store) -> None:
    """The heartbeat's thread sleeps without a timeout when nothing is held; a job that starts then must wake
    it, or the process's lease lapses while it works and the job is taken over from a live process."""
    w = World(world_store, "auto", "ok")
    w.new_message(0, 0, sentences=1, voice=False, stream=False, stuck=False)  # a quick one: hold, drop, beat
    w.finish_run(w.runs[0])
    w.advance(2.5)  # a renewal period passes with nothing held: the thread sleeps until a hold wakes it
    assert w.procs[0].hb_wake is None
    w.new_message(0, 0, sentences=1, voice=False, stream=False, stuck=False, spoken=True)  # a long job
    msg = w.messages[-1]
    w.start_queued(w.procs[0])
    w.advance(5.6)
    w.send_try(msg, 1)  # WeChat's second try, at the other process, looks at the owner now and then
    w.advance(6.0)
    assert not w.check()
    w.finish_run(next(r for r in w.runs if r.msg is msg))
    problems = w.settle()
    assert not problems, problems
