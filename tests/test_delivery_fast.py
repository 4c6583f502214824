"""The fast path's trade, played out on each store (memory, SQLite, Redis) on the schedules world's fake clock:
the real delivery code, WeChat's tries, copies, ``kill -9`` and the watchdog's timer stepped by hand.

A text handler that answers within ``[reply] fast_path_s`` (``FAST``) runs before anything is written and costs
one write; one still running then is claimed by its watchdog and has today's guarantees. What it may see: two
runs when two copies overlap within ``T``, or when its process dies within ``T`` — never two answers.
(tests/test_delivery_schedules.py explores these moves among all the others.)
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis_support
from delivery_support import bot_config, start_sandbox, wait_for
from redis_support import drop_prefix, redis_target, require_redis  # noqa: F401 - fixture
from schedules import FAST, LEASE, POOL_DELAY, World

from bot.config import ConfigError
from bot.core.router import Router
from bot.delivery.background import TimerThread
from bot.delivery.record import OPEN, Record, State
from bot.ops.clock import SYSTEM, SystemClock
from bot.runtime import build_webhook
from bot.store import Store, open_store
from bot.testing import BotClient


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "redis":
        url, prefix = require_redis(), f"wvbtest:fast:{uuid.uuid4().hex[:12]}:"
        with open_store(url, prefix=prefix) as s:
            yield s
        drop_prefix(url, prefix)
        return
    with open_store("memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}") as s:
        yield s


def text(w: World, proc: int = 0, user: int = 0, sentences: int = 1) -> None:
    w.new_message(user, proc, sentences=sentences, voice=False, stream=False, stuck=False)


def seen(w: World, n: int) -> list[tuple[int, int]]:
    """``(part, run)`` of message ``n``'s answer as its user saw them."""
    return w.tokens().get(n, [])


def test_a_handler_answered_within_t_is_one_delivered_record_and_nothing_else(store: Store) -> None:
    w = World(store, "auto", "ok")
    text(w)
    msg = w.messages[0]
    assert w.record(msg) is None  # the handler runs with nothing written
    run = w.runs[0]
    assert run.fast
    w.advance(0.1)
    w.finish_run(run)
    record = w.record(msg)
    assert record is not None and record.state is State.DELIVERED and record.via == "passive"
    assert record.owner is None and record.push is None  # no claim was ever written
    assert store.index_range(OPEN) == [] and not store.get(f"dl:{msg.key}:tries")
    assert seen(w, msg.n) == [(0, 1)]
    assert not w.settle()


@pytest.mark.parametrize("first", ["copy", "original"])
def test_a_copy_during_a_fast_run_runs_the_handler_too_and_one_answer_is_given(store: Store, first: str) -> None:
    """Two copies overlapping within ``T`` both run the handler (the trade); the first add wins, and the other
    copy answers from the winner's record (its own run's answer is dropped)."""
    w = World(store, "auto", "ok")
    text(w)
    msg = w.messages[0]
    w.advance(0.1)
    w.send_try(msg, 1, copy=True)
    assert msg.runs == 2 and all(r.fast for r in w.runs)
    original, copy = w.runs
    w.finish_run(copy if first == "copy" else original)
    w.finish_run(original if first == "copy" else copy)
    winner = 2 if first == "copy" else 1
    assert seen(w, msg.n) == [(0, winner)]  # WeChat shows the first reply; both carried the winner's answer
    assert all(t.done for t in msg.tries)
    record = w.record(msg)
    assert record is not None and record.answer is not None and f"r{winner}" in str(record.answer.parts[0])
    assert not w.settle()


def test_a_copy_while_the_message_is_fresh_runs_the_handler_too_and_one_answer_is_given(store: Store) -> None:
    """A copy that comes while the message is fresh (made under 2.5 s ago) reads nothing first either: after
    ``T`` it runs the handler too (the trade: WeChat never sends one so soon), its watchdog's claim loses to the
    first's, and it answers from the first's record."""
    w = World(store, "auto", "ok")
    text(w)
    msg = w.messages[0]
    w.advance(FAST + 0.1)
    record = w.record(msg)
    assert record is not None and record.state is State.RUNNING  # the watchdog claimed it at T
    w.send_try(msg, 1, copy=True)
    assert msg.runs == 2
    w.finish_run(w.runs[0])
    w.advance(FAST + 0.1)  # the copy's watchdog finds the first's claim
    w.finish_run(w.runs[0])
    w.advance(0.1)
    assert seen(w, msg.n) == [(0, 1)]
    assert not w.settle()


@pytest.mark.parametrize("answered", [True, False])
def test_a_copy_to_the_same_process_while_the_message_is_fresh_reads_first(store: Store, answered: bool) -> None:
    """A client that posts a message twice, or one worker that gets both: the process remembers what it began
    while fresh, and a copy reads first — the answer given, it carries the same reply; the handler past ``T``
    (claimed), it joins. (Within ``T``, before anything is written, the copy runs the handler too: the trade.)"""
    w = World(store, "auto", "ok")
    text(w)
    msg = w.messages[0]
    if answered:
        w.advance(0.1)
        w.finish_run(w.runs[0])
    else:
        w.advance(FAST + 0.1)  # the watchdog claimed it
    w.send_try(msg, 0, copy=True)  # the same process
    assert msg.runs == 1
    if not answered:
        w.finish_run(w.runs[0])
        w.advance(0.1)
    assert all(t.done for t in msg.tries)
    assert seen(w, msg.n) == [(0, 1)]
    assert not w.settle()


def test_a_copy_after_the_message_is_fresh_joins_the_watchdogs_claim(store: Store) -> None:
    w = World(store, "auto", "ok")
    text(w)
    msg = w.messages[0]
    w.advance(3.0)  # past T, and the message was made 3 s ago: no first try comes so late
    record = w.record(msg)
    assert record is not None and record.state is State.RUNNING  # the watchdog claimed it at T
    w.send_try(msg, 1, copy=True)
    assert msg.runs == 1  # the copy read the claim and joins the job: no second run
    w.finish_run(w.runs[0])
    w.advance(0.1)
    assert seen(w, msg.n) == [(0, 1)]
    assert not w.settle()


def reads_of(store: Store) -> list[str]:
    """Every read round a fast try makes before its handler (``get_peeking``), as it happens."""
    reads: list[str] = []
    read = store.get_peeking

    def counted(key: str, peek: str) -> tuple[str | None, bool]:
        reads.append(key)
        return read(key, peek)
    store.get_peeking = counted  # type: ignore[method-assign]
    return reads


@pytest.mark.parametrize("age,read", [(0.0, False), (0.9, False), (3.0, True)])
def test_a_first_try_reads_before_its_handler_only_when_its_message_is_not_fresh(store: Store, age: float,
                                                                                 read: bool) -> None:
    """Made under 2.5 s ago (half of WeChat's 5 s), a message can only be at its first try: nothing is read
    before its handler, and its one write is also its look at the user's kept answers. Made 3 s ago (WeChat was
    slow to send it; a retry is 5 s old or more), its record and its user's pickup index are read first."""
    w = World(store, "auto", "ok")
    reads = reads_of(store)
    w.new_message(0, 0, sentences=1, voice=False, stream=False, stuck=False, age=age)
    msg = w.messages[0]
    assert w.runs[0].fast and reads == ([f"dl:{msg.key}"] if read else [])
    w.finish_run(w.runs[0])
    record = w.record(msg)
    assert record is not None and record.state is State.DELIVERED and record.owner is None
    assert seen(w, msg.n) == [(0, 1)]
    assert not w.settle()


def test_a_message_made_in_the_servers_future_makes_every_try_read_first_for_ten_minutes(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """A message made 3 s in this server's future says its clock is behind WeChat's, by enough that a retry could
    look fresh: every try reads first for 10 minutes, and one WARNING line says why and what to do."""
    w = World(store, "auto", "ok")
    reads = reads_of(store)
    with caplog.at_level("WARNING", logger="bot.delivery"):
        w.new_message(0, 0, sentences=1, voice=False, stream=False, stuck=False, age=-3.0)
        w.finish_run(w.runs[0])
        text(w)
        w.finish_run(w.runs[0])
    behind = [r.getMessage() for r in caplog.records if "behind WeChat's" in r.getMessage()]
    assert len(behind) == 1 and "msg_id=1" in behind[0] and "NTP" in behind[0], behind
    assert reads == [f"dl:{m.key}" for m in w.messages]
    w.advance(601.0)
    text(w)
    w.finish_run(w.runs[0])
    assert len(reads) == 2  # ten minutes later a fresh message reads nothing again
    assert [seen(w, m.n) for m in w.messages] == [[(0, 1)]] * 3
    assert not w.settle()


@pytest.mark.parametrize("mode", ["auto", "passive"])
def test_a_handler_crossing_t_is_claimed_and_a_wechat_retry_joins_it(store: Store, mode: str) -> None:
    """Still running at ``T``: the watchdog writes today's claim. It returns past WeChat's 5 s: its try is gone,
    WeChat's retry (another process) joins the job, and the answer goes by that retry — once."""
    w = World(store, mode, "ok")
    text(w)
    msg = w.messages[0]
    w.advance(FAST / 2)
    assert w.record(msg) is None
    w.advance(FAST)
    record = w.record(msg)
    assert record is not None and record.state is State.RUNNING and record.owner and record.push
    w.advance(5.2 - 1.5 * FAST)  # WeChat dropped the first try
    assert w.retry_due() == [msg]
    w.send_try(msg, 1)
    w.finish_run(w.runs[0])
    w.advance(1.0)
    assert msg.runs == 1
    assert not w.settle()
    assert seen(w, msg.n) == [(0, 1)]
    record = w.record(msg)
    assert record is not None and record.via == "retry"


def test_customer_service_mode_claims_first(store: Store) -> None:
    """``mode = "customer_service"`` takes no fast path: its try must answer success at the budget, and a handler
    run in the request could hold it past that. The claim is written before the handler runs, on the pool."""
    w = World(store, "customer_service", "ok")
    text(w)
    msg = w.messages[0]
    record = w.record(msg)
    assert record is not None and record.state is State.RUNNING and not w.runs  # claimed; the job is queued
    w.advance(POOL_DELAY + 0.01)
    assert len(w.runs) == 1 and not w.runs[0].fast
    w.finish_run(w.runs[0])
    assert not w.settle()
    assert seen(w, msg.n) == [(0, 1)]


def test_a_retry_that_waited_past_its_budget_does_not_carry_the_answer(store: Store) -> None:
    """WeChat's retry carries its first try's query, timestamp included, and is sent 5 s after that try. One
    that waited 4.8 s before a thread took it (a burst: before the server even accepted it, so no queue stamp
    says so) is past its budget: WeChat has dropped it, and an answer marked delivered on it would be lost. It
    carries nothing; the next try does (found by benchmarks/delivery.py --overload: 2 of 600 lost)."""
    w = World(store, "auto", "ok")
    text(w)
    msg = w.messages[0]
    w.advance(5.2)  # the handler crossed T (claimed) and the first try; WeChat dropped that try
    w.finish_run(w.runs[0])
    assert w.retry_due() == [msg]
    w.send_try(msg, 1, stamp_late=5.0 + 4.8)  # sent 5 s after the first try, taken by a thread 4.8 s later
    assert seen(w, msg.n) == []
    record = w.record(msg)
    assert record is not None and record.state is State.DONE  # not marked delivered on a dropped try
    w.advance(5.2)
    assert w.retry_due() == [msg]
    w.send_try(msg, 0, stamp_late=10.0 + 0.1)  # the third try, taken at once
    assert seen(w, msg.n) == [(0, 1)]
    record = w.record(msg)
    assert record is not None and record.via == "retry"
    assert not w.settle()


def test_kill_9_within_t_leaves_nothing_and_the_retry_runs_the_handler_again(store: Store) -> None:
    w = World(store, "auto", "ok")
    text(w)
    msg = w.messages[0]
    w.advance(FAST / 2)
    w.kill(w.procs[0])
    assert w.record(msg) is None  # nothing was written
    w.advance(5.0)
    assert w.retry_due() == [msg]
    w.send_try(msg, 1)
    assert msg.runs == 2  # allowed: the process died within T
    w.finish_run(w.runs[0])
    assert seen(w, msg.n) == [(0, 2)]
    assert not w.settle()


def test_kill_9_after_t_is_taken_over_as_today(store: Store) -> None:
    w = World(store, "auto", "ok")
    text(w)
    msg = w.messages[0]
    w.advance(FAST + 0.1)
    claimed = w.record(msg)
    assert claimed is not None and claimed.state is State.RUNNING
    w.kill(w.procs[0])
    w.advance(5.0)
    w.send_try(msg, 1)  # WeChat's retry finds the claim; its owner stops renewing: taken over after a lease
    w.advance(LEASE + 1.0 - 5.0)
    record = w.record(msg)
    assert record is not None and record.owner != claimed.owner, record
    w.start_queued(w.procs[1])
    w.finish_run(w.runs[0])
    w.advance(0.5)
    assert seen(w, msg.n) == [(0, 2)] and msg.runs == 2
    assert not w.settle()


def test_a_user_with_kept_answers_takes_the_claim_path_and_sees_them_first(store: Store) -> None:
    w = World(store, "customer_service", "48001")  # no customer service: a late answer is kept for pickup
    text(w)
    first = w.messages[0]
    w.advance(5.2)  # the handler outlived the try (claimed at T), which WeChat dropped: nothing to carry it
    w.finish_run(w.runs[0])
    record = w.record(first)
    assert record is not None and record.state is State.PENDING
    text(w)  # the user writes again: their kept answer goes first
    second = w.messages[1]
    w.advance(POOL_DELAY + 0.01)  # customer_service mode: the job runs on the pool
    assert not w.runs[0].fast  # the claim path: the kept answer is shown with this reply
    w.finish_run(w.runs[0])
    w.advance(0.1)
    assert seen(w, first.n) == [(0, 1)] and seen(w, second.n) == [(0, 1)]
    # the pickup notice at the first try's budget; then one reply: the kept answer, then the new
    assert [how for _, how, _ in w.seen[first.user]] == ["passive", "passive"]
    assert not w.settle()


def test_a_fresh_message_of_a_user_with_kept_answers_runs_at_once_and_shows_them_first(store: Store) -> None:
    """Nothing is read before a fresh message's handler, so a user's kept answers are found by its one write
    (refused: the user has some), one read says so, and the usual path shows them first."""
    w = World(store, "auto", "48001")  # no customer service: a late answer is kept for pickup
    text(w)
    first = w.messages[0]
    for _ in range(2):  # the handler outlives WeChat's three tries
        w.advance(5.2)
        assert w.retry_due() == [first]
        w.send_try(first, 1)
    w.advance(5.2)
    w.finish_run(w.runs[0])
    w.advance(0.1)
    record = w.record(first)
    assert record is not None and record.state is State.PENDING  # kept for pickup
    reads = reads_of(store)
    text(w)  # the user writes again
    second = w.messages[1]
    assert w.runs[0].fast and reads == []  # nothing read: the handler runs at once
    w.finish_run(w.runs[0])
    assert reads == [f"dl:{second.key}"]  # the write was refused: one read says why
    w.advance(0.1)
    assert seen(w, first.n) == [(0, 1)] and seen(w, second.n) == [(0, 1)]
    answers = [shown for _, _, shown in w.seen[first.user] if "s0r" in shown]
    assert "m1s0r1" in answers[0] and "m2s0r1" in answers[-1], answers  # the kept answer first
    assert not w.settle()


# -- on the real clock: the runtime's timer thread, and the watchdog in a real request ------------------------
def test_the_timer_thread_runs_due_work_once_and_never_cancelled_work() -> None:
    timers = TimerThread(SYSTEM)
    ran: list[str] = []
    try:
        timers.after(0.1, lambda: ran.append("late"))
        cancel = timers.after(0.02, lambda: ran.append("cancelled"))
        timers.after(0.03, lambda: ran.append("early"))
        cancel()
        assert wait_for(lambda: len(ran) == 2, 2.0)
        time.sleep(0.05)
    finally:
        timers.close()
    assert ran == ["early", "late"]


class CountingClock(SystemClock):
    """The real clock, counting the timer thread's sleeps (each one a wake-up after it)."""

    def __init__(self) -> None:
        self.waits = 0

    def wait(self, event: threading.Event, timeout: float) -> bool:
        self.waits += 1
        return super().wait(event, timeout)


def test_the_timer_thread_is_not_woken_by_each_message_answered_in_time() -> None:
    """Under load every fast message arms a watchdog and cancels it within milliseconds. Before, the heap emptied
    between messages and each next one woke the thread (two context switches a message for nothing); now an entry
    wakes it only when due before the thread would look anyway — and an entry due sooner still runs on time."""
    clock = CountingClock()
    timers = TimerThread(clock)
    ran: list[float] = []
    try:
        for _ in range(100):
            timers.after(0.5, lambda: ran.append(-1.0))()  # armed and at once cancelled: answered in time
            time.sleep(0.002)  # the thread has time to look between messages
        assert clock.waits <= 10, clock.waits  # was ~100: one look per message
        armed = time.monotonic()
        timers.after(0.05, lambda: ran.append(time.monotonic() - armed))
        assert wait_for(lambda: bool(ran), 2.0)
    finally:
        timers.close()
    assert ran and 0.05 <= ran[0] < 0.4, ran  # due before the thread's next look: it was woken for it


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    return redis_support.backend_target(request.param, request, tmp_path)


def test_a_slow_handler_is_claimed_by_its_watchdog_at_t(store_target: tuple[str, str]) -> None:
    """A handler still running at ``T`` (0.1 s here): the runtime's timer writes the claim while the request
    thread is still in the handler — the record names this process's run, with the push to take over from."""
    url, prefix = store_target
    states: list[Record | None] = []
    router = Router("slow")

    @router.fallback
    def answer(ctx: Any) -> str:
        time.sleep(0.05)
        states.append(Record.load(webhook.delivery.store.get(f"dl:m:{ctx.msg_id}")))  # type: ignore[union-attr]
        time.sleep(0.15)
        states.append(Record.load(webhook.delivery.store.get(f"dl:m:{ctx.msg_id}")))  # type: ignore[union-attr]
        return f"echo {ctx.text}"

    with start_sandbox() as sandbox:
        config = bot_config(sandbox.url, store=url, prefix=prefix, reply={"fast_path_s": 0.1})
        webhook = build_webhook(config, router)
        try:
            assert BotClient(webhook).text("hi").content == "echo hi"
        finally:
            webhook.delivery.close()  # type: ignore[union-attr]
    before, after = states
    assert before is None  # nothing written before T
    assert after is not None and after.state is State.RUNNING and after.owner and after.push


def test_fast_path_s_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="fast_path_s"):
        bot_config("http://127.0.0.1:9", reply={"fast_path_s": -1})
