"""The store's semantics, expiry and atomicity, on every backend (memory, a real SQLite file, real Redis).

These atomic operations are the whole exactly-once guarantee of delivery, so races are run for real:
threads in one process, and for SQLite and Redis separate 'spawn' processes.
"""
from __future__ import annotations

import multiprocessing
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.pool import Pool
from pathlib import Path

import pytest
import redis_support
from redis_support import (  # noqa: F401 - fixtures are found by name
    PROCESSES,
    any_target,
    race_threads,
    redis_target,
    shared_target,
    spawn_pool,
    start_time,
    wait_until,
)

from bot.store import Store, StoreError, open_store
from bot.store.base import redact_url

EXPIRE = 0.2

# Start the worker processes with the module so they boot while the quick tests run.
pytestmark = pytest.mark.usefixtures("spawn_pool")


@pytest.fixture
def store(any_target: tuple[str, str]) -> Iterator[Store]:
    url, prefix = any_target
    with open_store(url, prefix=prefix) as s:
        yield s


# -- semantics --------------------------------------------------------------------------------------
def test_get_set_delete(store: Store) -> None:
    assert store.get("k") is None
    store.set("k", "v1")
    store.set("k", "v2")
    assert store.get("k") == "v2"
    store.delete("k")
    store.delete("k")  # absent: no error
    assert store.get("k") is None
    store.set("unicode", "语音 ✓")
    assert store.get("unicode") == "语音 ✓"


def test_add_only_when_absent(store: Store) -> None:
    assert store.add("k", "first") is True
    assert store.add("k", "second") is False
    assert store.get("k") == "first"


def test_compare_and_set(store: Store) -> None:
    assert store.compare_and_set("k", "x", "v") is False  # absent but something expected
    assert store.get("k") is None
    assert store.compare_and_set("k", None, "v1") is True  # None: must be absent
    assert store.compare_and_set("k", None, "v2") is False
    assert store.compare_and_set("k", "wrong", "v2") is False
    assert store.compare_and_set("k", "v1", "v2") is True
    assert store.get("k") == "v2"
    store.set("empty", "")
    assert store.compare_and_set("empty", None, "x") is False  # "" is a value, not absence
    assert store.compare_and_set("empty", "", "x") is True


def test_compare_and_delete(store: Store) -> None:
    assert store.compare_and_delete("k", "v") is False
    store.set("k", "v")
    assert store.compare_and_delete("k", "other") is False
    assert store.get("k") == "v"
    assert store.compare_and_delete("k", "v") is True
    assert store.get("k") is None


def test_incr(store: Store) -> None:
    assert store.incr("n") == 1
    assert store.incr("n", 5) == 6
    assert store.incr("n", -10) == -4
    assert store.get("n") == "-4"
    store.set("text", "abc")
    with pytest.raises(StoreError):
        store.incr("text")


def test_ttl_reporting(store: Store) -> None:
    assert store.ttl("absent") is None
    store.set("forever", "v")
    assert store.ttl("forever") is None
    store.set("short", "v", ttl=10)
    remaining = store.ttl("short")
    assert remaining is not None and 9 < remaining <= 10
    store.set("short", "v")  # a plain set drops the old expiry
    assert store.ttl("short") is None


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_rejects_non_positive_ttl(store: Store, bad: float) -> None:
    with pytest.raises(ValueError):
        store.set("k", "v", ttl=bad)


def test_add_peeking_claims_and_tells_whether_an_index_has_members(store: Store) -> None:
    assert store.add_peeking("m1", "v", 60, index=[("open", "m1", 1.0)], peek="pickup:u") == (True, False)
    assert store.index_range("open") == [("m1", 1.0)]  # the add's index change was applied
    assert store.add("kept", "v", index=[("pickup:u", "kept", 1.0)])
    assert store.add_peeking("m2", "v", 60, peek="pickup:u") == (True, True)
    assert store.add_peeking("m2", "again", 60, peek="pickup:u") == (False, False)  # not set: nothing to learn
    assert store.get("m2") == "v"
    assert store.add_peeking("m3", "v", 60, peek="pickup:other") == (True, False)
    assert store.add_peeking("m4", "v", 60, index=[("open", "m4", 2.0)], peek="pickup:u") == (True, True)
    assert store.compare_and_set("m4", "v", "w", 60, index=[("open", "m4", None)])  # a later write: no peek
    assert store.index_range("open") == [("m1", 1.0)]
    assert store.add_peeking("short", "v", EXPIRE, peek="pickup:other") == (True, False)
    time.sleep(EXPIRE + 0.05)  # an expired key is set again (on SQLite: the conflict's update, with its triggers)
    assert store.add_peeking("short", "again", 60, index=[("open", "short", 3.0)], peek="pickup:u") == (True, True)
    assert store.get("short") == "again" and store.index_range("open") == [("m1", 1.0), ("short", 3.0)]
    assert store.add("stale", "v", EXPIRE, index=[("open", "stale", 4.0)])
    time.sleep(EXPIRE + 0.05)  # expired, its index entry still there: the new add moves it
    assert store.add_peeking("stale", "new", 60, index=[("open", "stale", 5.0)], peek="pickup:none") == (True, False)
    assert store.add("stale2", "v", EXPIRE, index=[("open", "stale2", 6.0)])
    time.sleep(EXPIRE + 0.05)
    assert store.add("stale2", "new", 60, index=[("open", "stale2", 7.0)])
    assert store.index_range("open")[-2:] == [("stale", 5.0), ("stale2", 7.0)]


def test_get_peeking_reads_a_value_and_whether_an_index_has_members(store: Store) -> None:
    assert store.get_peeking("m1", "pickup:u") == (None, False)
    assert store.add("kept", "v", index=[("pickup:u", "kept", 1.0)])
    assert store.get_peeking("m1", "pickup:u") == (None, True)
    store.set("m1", "语音 ✓", 60)
    assert store.get_peeking("m1", "pickup:u") == ("语音 ✓", True)
    assert store.get_peeking("m1", "pickup:other") == ("语音 ✓", False)
    assert store.index_discard("pickup:u", "kept")
    assert store.get_peeking("m1", "pickup:u") == ("语音 ✓", False)  # an emptied index has no member
    store.set("short", "v", EXPIRE)
    time.sleep(EXPIRE + 0.05)
    assert store.get_peeking("short", "pickup:u") == (None, False)  # expired: absent


def test_add_if_empty_adds_only_when_the_key_is_absent_and_the_index_has_no_member(store: Store) -> None:
    assert store.add_if_empty("m1", "答 1", 60, empty="pickup:u")
    assert store.get("m1") == "答 1"
    assert not store.add_if_empty("m1", "答 2", 60, empty="pickup:u")  # live: a copy made it first
    assert store.get("m1") == "答 1"
    assert store.add("kept", "v", index=[("pickup:u", "kept", 1.0)])
    assert not store.add_if_empty("m2", "答", 60, empty="pickup:u")  # the user has an answer kept
    assert store.get("m2") is None
    assert store.add_if_empty("m2", "答", 60, empty="pickup:other")
    assert store.index_discard("pickup:u", "kept")
    assert store.add_if_empty("m3", "答", 60, empty="pickup:u")  # an emptied index has no member
    store.set("short", "v", EXPIRE)
    time.sleep(EXPIRE + 0.05)
    assert store.add_if_empty("short", "new", 60, empty="pickup:u")  # expired: absent
    assert store.get("short") == "new" and store.ttl("short") is not None


# -- expiry -----------------------------------------------------------------------------------------
def test_every_write_can_expire(store: Store) -> None:
    written = time.monotonic()
    store.set("set", "v", ttl=EXPIRE)
    assert store.add("add", "v", ttl=EXPIRE)
    assert store.compare_and_set("cas", None, "v", ttl=EXPIRE)
    assert store.incr("incr", 3, ttl=EXPIRE) == 3
    assert store.incr("incr", 1, ttl=60) == 4  # ttl only applies on creation: no extension
    last_write = time.monotonic()  # a backend's clock starts each expiry when the write arrives: by now
    if last_write - written < EXPIRE / 2:  # a heavily loaded machine may already be past it
        assert store.get("set") == "v"
        assert 0 < (store.ttl("incr") or 0) <= EXPIRE
    time.sleep(max(0.0, last_write + EXPIRE + 0.05 - time.monotonic()))
    for key in ("set", "add", "cas", "incr"):
        assert store.get(key) is None, key
        assert store.ttl(key) is None, key
    # an expired key counts as absent for every conditional operation
    assert store.add("add", "again") is True
    assert store.compare_and_set("cas", None, "again") is True
    assert store.compare_and_delete("set", "v") is False
    assert store.incr("incr") == 1


def test_prefix_isolation(any_target: tuple[str, str]) -> None:
    url, prefix = any_target
    with open_store(url, prefix=prefix + "a:") as a, open_store(url, prefix=prefix + "b:") as b:
        a.set("k", "from-a")
        assert b.get("k") is None
        assert b.add("k", "from-b") is True
        assert a.get("k") == "from-a" and b.get("k") == "from-b"
        b.delete("k")
        assert a.get("k") == "from-a"


# -- races between threads --------------------------------------------------------------------------
def test_threads_racing_add_have_one_winner(store: Store) -> None:
    for round_ in range(5):
        wins = race_threads(16, lambda r=round_: store.add(f"claim:{r}", "me", ttl=30))
        assert wins.count(True) == 1, wins


def test_threads_racing_cas_have_one_winner(store: Store) -> None:
    store.set("state", "new")
    wins = race_threads(16, lambda: store.compare_and_set("state", "new", "running"))
    assert wins.count(True) == 1


def test_threads_racing_incr_lose_nothing(store: Store) -> None:
    race_threads(8, lambda: [store.incr("n", ttl=30) for _ in range(100)])
    assert store.get("n") == "800"


# -- races between processes (SQLite and Redis only: memory:// is one process by design) -------------
def _incr_many(url: str, prefix: str, start_at: float, count: int) -> int:
    with open_store(url, prefix=prefix) as s:
        wait_until(start_at)
        for _ in range(count):
            s.incr("n")
    return os.getpid()


def _add_all(url: str, prefix: str, start_at: float, keys: int) -> int:
    with open_store(url, prefix=prefix) as s:
        wait_until(start_at)
        for i in range(keys):
            if s.add(f"claim:{i}", str(os.getpid()), ttl=30):
                s.incr(f"wins:{i}")
    return os.getpid()


def test_processes_racing_incr_lose_nothing(shared_target: tuple[str, str], spawn_pool: Pool) -> None:  # noqa: F811
    url, prefix = shared_target
    open_store(url, prefix=prefix).close()  # create the SQLite file before the race
    at = start_time()
    pids = spawn_pool.starmap(_incr_many, [(url, prefix, at, 200)] * PROCESSES)
    assert len(set(pids)) >= 2  # really several processes (normally all of them)
    with open_store(url, prefix=prefix) as s:
        assert s.get("n") == str(200 * PROCESSES)


def test_processes_racing_add_have_one_winner(shared_target: tuple[str, str], spawn_pool: Pool) -> None:  # noqa: F811
    url, prefix = shared_target
    open_store(url, prefix=prefix).close()
    at = start_time()
    pids = spawn_pool.starmap(_add_all, [(url, prefix, at, 50)] * PROCESSES)
    assert len(set(pids)) >= 2  # really several processes (normally all of them)
    with open_store(url, prefix=prefix) as s:
        assert [s.get(f"wins:{i}") for i in range(50)] == ["1"] * 50


def _open_fresh_files(directory: str, start_at: float, rounds: int) -> int:
    for i in range(rounds):
        wait_until(start_at + i * 0.05)
        with open_store(f"sqlite:///{directory}/{i}/state.db", prefix="p:") as s:
            s.incr("opened")
    return os.getpid()


def test_processes_opening_a_new_sqlite_file_at_once(tmp_path: Path, spawn_pool: Pool) -> None:  # noqa: F811
    """Every gunicorn worker opens the store as it boots; switching a new file to WAL must not fail.

    The failure this guards against ("database is locked" from ``PRAGMA journal_mode=WAL``, which
    skips the busy handler) is timing-dependent, so this is a smoke test run over a few fresh files.
    """
    rounds = 8
    spawn_pool.starmap(_open_fresh_files, [(str(tmp_path), start_time(), rounds)] * PROCESSES)
    for i in range(rounds):
        with open_store(f"sqlite:///{tmp_path}/{i}/state.db", prefix="p:") as s:
            assert s.get("opened") == str(PROCESSES)


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_sqlite_store_survives_fork(tmp_path: Path) -> None:
    """gunicorn --preload forks after the app opened its store: children must not share a connection."""
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    store = open_store(url, prefix="f:")
    store.incr("n")  # the parent has a live connection now
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=lambda: [store.incr("n") for _ in range(50)]) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    assert store.get("n") == "151"
    store.close()


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_sqlite_threads_share_one_connection_per_process_and_a_child_opens_its_own(tmp_path: Path) -> None:
    """SQLite drops a connection's page cache whenever another connection commits: with a connection per
    thread almost every statement read its pages again. One per process (the threads take turns); a child
    forked while a parent's thread held that connection opens its own and does not wait for the thread."""
    store = open_store(f"sqlite:///{tmp_path / 'one.db'}", prefix="o:")
    assert len(race_threads(16, lambda: [store.incr("n") for _ in range(20)])) == 16
    opened = store._opened  # type: ignore[attr-defined]
    assert [pid for pid, _ in opened] == [os.getpid()], opened  # one connection, whatever the threads
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._use():  # type: ignore[attr-defined]
            held.set()
            release.wait(10)
    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        child = multiprocessing.get_context("fork").Process(target=lambda: [store.incr("n") for _ in range(5)])
        child.start()
        child.join(10)
        assert child.exitcode == 0  # it neither waited for the parent's thread nor used the parent's connection
    finally:
        release.set()
        holder.join(5)
    assert store.get("n") == "325"
    store.close()


# -- SQLite specifics -------------------------------------------------------------------------------
def test_sqlite_relative_url_creates_dirs_and_uses_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///nested/dir/state.db") as s:
        s.set("k", "v")
    db = tmp_path / "nested" / "dir" / "state.db"
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_purges_expired_rows(tmp_path: Path) -> None:
    db = tmp_path / "purge.db"
    store = open_store(f"sqlite:///{db}")
    store.purge_every = 4  # type: ignore[attr-defined]
    for i in range(3):
        store.set(f"old:{i}", "v", ttl=0.05)
    time.sleep(0.1)
    store.set("keep", "v")  # the 4th write sweeps
    with sqlite3.connect(db) as conn:
        keys = [row[0] for row in conn.execute("SELECT key FROM wvb_kv")]
    assert keys == ["wvb:keep"]
    store.close()


def test_sqlite_hot_writes_are_one_statement_each(tmp_path: Path) -> None:
    """A transaction of several statements gives the GIL up between them while it holds the database's
    write lock: under a busy webhook every writer of every worker waited for other threads' Python code."""
    store = open_store(f"sqlite:///{tmp_path / 'one.db'}")
    statements: list[str] = []
    conn = store._conn()  # type: ignore[attr-defined]

    class Counting:  # each execute() is one GIL hand-off
        def execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
            statements.append(sql)
            return conn.execute(sql, params)
    store._conn = lambda: Counting()  # type: ignore[attr-defined]
    assert store.add("dl:1", "running", ttl=60, index=[("open", "dl:1", 10.0)])
    assert not store.add("dl:1", "again", ttl=60, index=[("open", "dl:1", 20.0)])
    assert store.compare_and_set("dl:1", "running", "done", ttl=60, index=[("open", "dl:1", None)])
    assert not store.compare_and_set("dl:1", "running", "done", ttl=60)
    assert store.get("dl:1") == "done"
    assert store.compare_and_delete("dl:1", "done")
    assert len(statements) == 6, statements
    assert store.index_range("open") == []  # the trigger applied the add's index entry and the swap's removal
    store.close()


def test_sqlite_index_changes_by_trigger_match_the_transaction_path(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ix.db'}")
    assert store.add("a", "1", index=[("open", "a", 5.0)])  # one change: the row's columns and a trigger
    assert store.add("b", "1", index=[("open", "b", 3.0), ("pickup:u", "b", 1.0)])  # several: a transaction
    assert store.compare_and_set("a", "1", "2", index=[("open", "a", 1.0)])  # moves the member
    assert not store.compare_and_set("b", "0", "2", index=[("open", "b", None)])  # refused: no index change
    assert store.index_range("open") == [("a", 1.0), ("b", 3.0)]
    assert store.index_range("pickup:u") == [("b", 1.0)]
    store.set("a", "plain")  # a write without index changes leaves the index alone
    assert store.compare_and_set("b", "1", "2", index=[("open", "b", None)])
    assert store.index_range("open") == [("a", 1.0)]
    store.close()


def test_sqlite_opens_a_file_of_the_earlier_layout(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the table as the previous version made it, with a record in it
        conn.execute("CREATE TABLE wvb_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL) WITHOUT ROWID")
        conn.execute("INSERT INTO wvb_kv VALUES ('wvb:kept', 'v', NULL)")
    store = open_store(f"sqlite:///{db}")
    assert store.get("kept") == "v"
    assert store.add("new", "v", index=[("open", "new", 1.0)])
    assert store.index_range("open") == [("new", 1.0)]
    store.close()


def test_sqlite_wal_stays_small_under_steady_writes(tmp_path: Path) -> None:
    """Writers that never pause: SQLite's own checkpoints never rewound the WAL, which grew by every page
    written (~25 KB a message); ours rewind it every ``checkpoint_every`` writes."""
    db = tmp_path / "steady.db"
    store = open_store(f"sqlite:///{db}")
    value = "x" * 700

    def messages() -> None:
        thread = threading.get_ident()
        for i in range(400):
            key = f"dl:{thread}:{i}"
            store.add(key, value, ttl=600, index=[("open", key, 1.0)])
            store.compare_and_set(key, value, value + "y", ttl=600, index=[("open", key, None)])
    assert race_threads(8, messages) == [None] * 8
    wal = Path(f"{db}-wal").stat().st_size
    assert wal < 12_000_000, f"WAL is {wal / 1e6:.1f} MB after 3,200 messages"
    assert store.index_range("open") == []
    store.close()


def test_memory_sweeps_expired_keys_in_expiry_order_and_spares_rewritten_ones() -> None:
    store = open_store("memory://")
    for i in range(3):
        store.set(f"old:{i}", "v", ttl=0.05)
    store.set("renewed", "v1", ttl=0.05)
    store.set("renewed", "v2", ttl=60)  # its first heap item comes up stale and must not remove it
    store.set("forever", "v")
    time.sleep(0.1)
    store.set("trigger", "v", ttl=60)  # every write sweeps what has expired
    assert sorted(store._data) == ["wvb:forever", "wvb:renewed", "wvb:trigger"]  # type: ignore[attr-defined]
    assert sorted(key for _, key in store._expiries) == ["wvb:renewed", "wvb:trigger"]  # type: ignore[attr-defined]
    assert store.get("renewed") == "v2"
    for _ in range(100):  # a counter keeps its expiry: one heap item, however often it counts
        store.incr("tries", ttl=60)
    assert sum(key == "wvb:tries" for _, key in store._expiries) == 1  # type: ignore[attr-defined]
    store.close()


def test_sqlite_in_memory_is_shared_by_threads() -> None:
    with open_store("sqlite://:memory:") as s:
        race_threads(4, lambda: [s.incr("n") for _ in range(50)])
        assert s.get("n") == "200"


def test_sqlite_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="sqlite store"):
        open_store(f"sqlite:///{blocker / 'state.db'}")


# -- URLs and errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["postgres://u:hunter2@db/x", "localhost:6379", "sqlite:///"])
def test_bad_urls_name_the_supported_forms(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_store(url)
    message = str(info.value)
    assert "hunter2" not in message
    assert "sqlite:///" in message
    if not url.startswith("sqlite"):
        assert "memory://" in message and "redis://" in message
        assert repr(url.partition("://")[0] if "://" in url else "(none)") in message


def test_unreachable_redis_is_a_clear_store_error() -> None:
    started = time.monotonic()
    store = open_store("redis://admin:hunter2@127.0.0.1:1/0")  # lazy: no network yet
    for op in (store.ping, lambda: store.get("k"), lambda: store.add("k", "v")):
        with pytest.raises(StoreError) as info:
            op()
        message = str(info.value)
        assert "unreachable" in message and "127.0.0.1:1" in message
        assert "hunter2" not in message and "hunter2" not in repr(info.value.__cause__)
    store.close()
    assert time.monotonic() - started < 3


def test_missing_redis_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.config.extras import install_hint
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(StoreError) as info:
        open_store("redis://127.0.0.1:6379/15")
    assert str(info.value).endswith(f"needs the redis client: {install_hint('redis')}")  # as this one was installed


def test_redact_url() -> None:
    assert redact_url("redis://user:p%40ss@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("rediss://:secret@host/1") == "rediss://:***@host/1"
    assert "s3cr3t" not in redact_url("redis://host/0?password=s3cr3t&db=2")
    assert redact_url("sqlite:////abs/path.db") == "sqlite:////abs/path.db"


def test_redis_helper_skips_locally_but_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/15")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        redis_support.require_redis()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        redis_support.require_redis()


# -- indexes: changed in the same atomic operation as a record ---------------------------------------
def test_index_changes_apply_with_the_record_or_not_at_all(store: Store) -> None:
    assert store.index_range("open") == []
    assert store.add("r1", "running", index=[("open", "r1", 20.0), ("user:a", "r1", 1.0)]) is True
    assert store.add("r2", "running", index=[("open", "r2", 10.0)]) is True
    assert store.add("r1", "again", index=[("open", "r1", 5.0)]) is False  # lost the add: index untouched
    assert store.index_range("open") == [("r2", 10.0), ("r1", 20.0)]  # lowest score first
    assert store.index_range("open", until=15.0) == [("r2", 10.0)]
    assert store.index_range("open", limit=1) == [("r2", 10.0)]
    assert store.compare_and_set("r1", "stale", "done", index=[("open", "r1", None)]) is False
    assert store.index_range("user:a") == [("r1", 1.0)]
    assert store.compare_and_set("r1", "running", "pending", index=[("open", "r1", 30.5), ("user:a", "r1", None)])
    assert store.index_range("open") == [("r2", 10.0), ("r1", 30.5)]  # moved, not duplicated
    assert store.index_range("user:a") == []
    assert store.get("r1") == "pending"


def test_index_discard_only_while_the_score_is_unchanged(store: Store) -> None:
    store.add("r", "x", index=[("open", "r", 3.25)])
    assert store.index_discard("open", "r", 9.0) is False  # someone moved it since it was read: keep it
    assert store.index_discard("open", "r", 3.25) is True
    assert store.index_discard("open", "r") is False  # already gone
    store.compare_and_set("r", "x", "y", index=[("open", "r", 4.0)])
    assert store.index_discard("open", "r") is True
    assert store.index_range("open") == []


def test_index_names_are_apart_from_record_keys(store: Store) -> None:
    store.set("open", "a record named like the index")
    store.add("r", "x", index=[("open", "r", 1.0)])
    assert store.get("open") == "a record named like the index"
    assert store.index_range("open") == [("r", 1.0)]


def _index_claims(url: str, prefix: str, start_at: float, keys: int) -> int:
    with open_store(url, prefix=prefix) as s:
        wait_until(start_at)
        for i in range(keys):  # every process moves each record once; exactly one wins per record
            if s.compare_and_set(f"job:{i}", "open", f"taken:{os.getpid()}", index=[("open", f"job:{i}", None),
                                                                                   ("won", f"job:{i}", float(i))]):
                s.incr("wins")
    return os.getpid()


def test_processes_racing_on_indexed_records_move_each_once(shared_target: tuple[str, str],  # noqa: F811
                                                            spawn_pool: Pool) -> None:  # noqa: F811
    url, prefix = shared_target
    keys = 40
    with open_store(url, prefix=prefix) as s:
        for i in range(keys):
            s.add(f"job:{i}", "open", index=[("open", f"job:{i}", float(i))])
    at = start_time()
    pids = spawn_pool.starmap(_index_claims, [(url, prefix, at, keys)] * PROCESSES)
    assert len(set(pids)) >= 2
    with open_store(url, prefix=prefix) as s:
        assert s.get("wins") == str(keys)
        assert s.index_range("open") == []
        assert s.index_range("won") == [(f"job:{i}", float(i)) for i in range(keys)]


def test_sqlite_checkpoint_held_off_by_a_reader_tries_again_soon(tmp_path: Path) -> None:
    """A rewind that a reader holds off is tried again ``checkpoint_retry`` writes later, not a whole interval."""
    db = tmp_path / "held.db"
    store = open_store(f"sqlite:///{db}")
    store.checkpoint_every, store.checkpoint_retry = 20, 5  # type: ignore[attr-defined]
    store._checkpoint_at = 20  # type: ignore[attr-defined]
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM wvb_kv").fetchone()  # a snapshot: the WAL cannot start over under it
    for i in range(20):  # the 20th write's checkpoint waits 0.1 s for the reader, then gives up
        store.set(f"k{i}", "v" * 500)
    reader.execute("ROLLBACK")
    for i in range(6):  # the retry, 5 writes later, rewinds the WAL; the last write starts it over
        store.set(f"m{i}", "v" * 500)
    frames = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    assert 0 < frames < 10, f"{frames} frames in the WAL: the held-off checkpoint was not retried"
    reader.close()
    store.close()
