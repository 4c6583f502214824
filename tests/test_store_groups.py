"""Grouped writes (bot/store/groups.py): the threads that write while a write is under way write together, and
the SQLite store's ``add_if_empty`` (the fast path's one write per message) makes a group in one statement.

The grouping is driven for real: threads queue behind a write held open, then the held write ends and the next
group goes as one call. The SQLite cases run on a real file, against a second connection for "another process".
"""
from __future__ import annotations

import multiprocessing
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest
from redis_support import race_threads

from bot.store import StoreError, open_store
from bot.store.groups import Member, WriteGroups
from bot.store.sqlite import SQLiteStore


def _member(key: str, value: str = "v") -> Member:
    return Member(key, value, 60.0, "pickup:u")


def _wait_for(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Held:
    """A write function whose first call blocks until released: the threads that come meanwhile queue."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self.fail = fail

    def __call__(self, group: list[Member]) -> None:
        self.calls.append([m.key for m in group])
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if self.fail and len(self.calls) == 2:
            raise StoreError("disk full")
        for m in group:
            m.written = not m.key.startswith("no")


def test_writes_that_come_during_a_write_go_together_in_the_next_group() -> None:
    write = Held()
    groups = WriteGroups(write)
    results: dict[str, bool] = {}

    def join(key: str) -> None:
        results[key] = groups.join(_member(key))
    first = threading.Thread(target=join, args=("a",))
    first.start()
    assert write.entered.wait(5)
    others = [threading.Thread(target=join, args=(k,)) for k in ("b", "no-c", "d", "e")]
    for t in others:
        t.start()
    _wait_for(lambda: len(groups._queued) == 4)  # queued behind the write under way, none writing on its own
    write.release.set()
    for t in [first, *others]:
        t.join(5)
    assert write.calls[0] == ["a"]
    assert len(write.calls) == 2 and sorted(write.calls[1]) == ["b", "d", "e", "no-c"], write.calls
    assert results == {"a": True, "b": True, "no-c": False, "d": True, "e": True}
    assert groups.join(_member("alone")) and write.calls[-1] == ["alone"]  # a quiet moment: a group of one


def test_a_failed_group_fails_each_of_its_writes_and_the_next_group_still_goes() -> None:
    write = Held(fail=True)
    groups = WriteGroups(write)
    outcomes: dict[str, object] = {}

    def join(key: str) -> None:
        try:
            outcomes[key] = groups.join(_member(key))
        except StoreError as exc:
            outcomes[key] = exc
    first = threading.Thread(target=join, args=("a",))
    first.start()
    assert write.entered.wait(5)
    others = [threading.Thread(target=join, args=(k,)) for k in ("b", "c")]
    for t in others:
        t.start()
    _wait_for(lambda: len(groups._queued) == 2)
    write.release.set()
    for t in [first, *others]:
        t.join(5)
    assert outcomes["a"] is True
    assert all(isinstance(outcomes[k], StoreError) and "disk full" in str(outcomes[k]) for k in ("b", "c")), outcomes
    assert groups.join(_member("d")) is True  # nobody is left leading: the next write goes at once


def test_a_group_limit_splits_a_long_queue() -> None:
    write = Held()
    groups = WriteGroups(write, limit=2)
    threads = [threading.Thread(target=groups.join, args=(_member("a"),))]
    threads[0].start()
    assert write.entered.wait(5)
    for k in "bcde":
        threads.append(threading.Thread(target=groups.join, args=(_member(k),)))
        threads[-1].start()
    _wait_for(lambda: len(groups._queued) == 4)
    write.release.set()
    for t in threads:
        t.join(5)
    assert [len(c) for c in write.calls] == [1, 2, 2], write.calls


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_forked_child_does_not_wait_for_its_parents_group(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    assert isinstance(store, SQLiteStore)
    store._groups._leading = True  # as if a parent's thread were writing a group when the child was forked,
    assert store._groups._lock.acquire(timeout=5)  # and another were queueing (the lock held at the fork)
    try:
        child = multiprocessing.get_context("fork").Process(
            target=lambda: os._exit(0 if store.add_if_empty("child", "v", 60, empty="pickup:u") else 3))
        child.start()
        child.join(10)
        assert child.exitcode == 0
    finally:
        store._groups._lock.release()
        store._groups._leading = False
    assert store.get("child") == "v"
    store.close()


# -- the SQLite store's add_if_empty ----------------------------------------------------------------------------
@pytest.fixture
def sqlite_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = open_store(f"sqlite:///{tmp_path / 's.db'}", prefix="t:")
    assert isinstance(store, SQLiteStore)
    yield store
    store.close()


def test_a_group_of_fast_answers_is_one_statement(sqlite_store: SQLiteStore) -> None:
    statements: list[str] = []
    conn = sqlite_store._conn()

    class Counting:
        def execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
            statements.append(sql)
            return conn.execute(sql, params)
    sqlite_store._conn = lambda: Counting()  # type: ignore[method-assign,assignment,return-value]
    group = [Member("t:m1", "a1", 60.0, "t:ix:pickup:u1"), Member("t:m2", "a2", 60.0, "t:ix:pickup:u2"),
             Member("t:m1", "copy", 60.0, "t:ix:pickup:u1")]
    sqlite_store._add_group(group)
    assert [m.written for m in group] == [True, True, False]  # the copy in the same group: the first one decides
    assert len(statements) == 1, statements
    assert sqlite_store.get("m1") == "a1" and sqlite_store.get("m2") == "a2"


def test_a_group_member_refused_for_a_live_record_or_kept_answers_and_the_others_written(
        sqlite_store: SQLiteStore) -> None:
    assert sqlite_store.add("m1", "a copy's answer", 60)
    assert sqlite_store.add("m0", "kept", index=[("pickup:kept-user", "m0", 1.0)])
    group = [Member("t:m1", "mine", 60.0, "t:ix:pickup:u1"), Member("t:m2", "a2", 60.0, "t:ix:pickup:kept-user"),
             Member("t:m3", "a3", 60.0, "t:ix:pickup:u3")]
    sqlite_store._add_group(group)
    assert [m.written for m in group] == [False, False, True]
    assert [sqlite_store.get(k) for k in ("m1", "m2", "m3")] == ["a copy's answer", None, "a3"]


def test_an_identical_record_written_by_another_process_counts_as_a_copys(sqlite_store: SQLiteStore,
                                                                           tmp_path: Path) -> None:
    """Which of two identical rows is ours cannot be told: none counts as written (each caller then answers
    from the record, as a copy would), never two."""
    with open_store(f"sqlite:///{tmp_path / 's.db'}", prefix="t:") as other:
        assert other.add("m1", "same answer", 60)
    group = [Member("t:m1", "same answer", 60.0, "t:ix:pickup:u1"), Member("t:m2", "a2", 60.0, "t:ix:pickup:u2")]
    sqlite_store._add_group(group)
    assert [m.written for m in group] == [False, False]
    assert sqlite_store.get("m2") == "a2"  # written all the same: a retry finds it and carries it


def test_threads_racing_add_if_empty_have_one_winner_per_key(sqlite_store: SQLiteStore) -> None:
    for round_ in range(5):
        wins = race_threads(16, lambda r=round_: sqlite_store.add_if_empty(f"m{r}", "a", 60, empty="pickup:u"))
        assert wins.count(True) == 1, wins
    distinct = iter(range(10_000))
    wins = race_threads(16, lambda: sqlite_store.add_if_empty(f"d{next(distinct)}", "a", 60, empty="pickup:u"))
    assert wins == [True] * 16
    assert sqlite_store.add("kept", "v", index=[("pickup:u", "kept", 1.0)])
    wins = race_threads(16, lambda: sqlite_store.add_if_empty(f"e{next(distinct)}", "a", 60, empty="pickup:u"))
    assert wins == [False] * 16  # the user has answers kept: none of their fast answers is recorded
