"""Embedded store shared by several worker processes on one machine (the default).

A single SQLite file in WAL mode lets gunicorn workers share dedupe keys, leases and the access token
without running a server.

One connection per process, used by one thread at a time. SQLite drops a connection's page cache whenever
another connection commits, so with a connection per thread (64 a worker) almost every statement began by
reading its pages again; with one per process only the other processes' commits do that. A statement takes
tens of microseconds, so the turns are short (measured: README "Benchmarks"). A forked child never uses its parent's connection (SQLite connections must
not cross a fork): it opens its own on first use.

Why the hot writes are single statements. A webhook's request threads share one GIL, and Python's sqlite3
releases it around every statement: a transaction of ``BEGIN; SELECT; INSERT; INSERT; COMMIT`` gave the GIL up
five times and had to win it back each time *while holding the database's write lock*, so every writer of
every worker process waited for other threads' Python code. ``add``, ``add_if_empty``, ``compare_and_set``,
``set``, ``compare_and_delete`` and ``get`` are one statement each (SQLite commits it on its own, without the
GIL): the condition is in the statement (``INSERT OR REPLACE … WHERE NOT EXISTS`` a live row, ``UPDATE … WHERE
value = ?``), the one index change of ``add``/``compare_and_set`` rides in the row's ``ix_*`` columns and a
trigger applies it, and ``add_peeking``'s look at an index is a TEMP trigger of the connection, in the same
statement (tables and triggers: bot/store/sqlite_schema.py). ``add_if_empty``, the fast path's one write per
message, goes further: the threads that make it while one is under way make it together, one statement for all
(bot/store/groups.py). The other writes (rare: ``incr``, ``index_discard``) run in ``BEGIN IMMEDIATE``. The contract is
``LockingStore``'s, and ``tests/test_store.py`` runs the same cases against every backend.
"""
from __future__ import annotations

import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.store.base import Entry, IndexOp, LockingStore, StoreError, T, check_ttl, fork_lock
from bot.store.groups import Member, WriteGroups
from bot.store.sqlite_schema import setup

log = logging.getLogger("bot.store")
_LIVE = "(expires_at IS NULL OR expires_at > ?)"

MEMORY = ":memory:"


def path_from_url(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``, ``sqlite:////abs.db`` -> ``/abs.db``, ``sqlite://:memory:``."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if rest in (MEMORY, "/" + MEMORY):
        return MEMORY
    path = rest[1:] if rest.startswith("/") else rest
    if not path:
        raise ValueError(
            f"sqlite URL {url!r} has no file path: use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    return path


@functools.cache
def _add_if_empty_sql(members: int) -> str:
    """A group's add_if_empty: each member inserted unless a live row has its key or its index has a member, in
    one statement (the SELECT is read in full before the first row goes in: each member is judged on the table
    as it was before the group)."""
    rows = ", ".join(["(?, ?, ?, ?)"] * members)
    return ("INSERT OR REPLACE INTO wvb_kv (key, value, expires_at) SELECT column1, column2, column3"
            f" FROM (VALUES {rows}) WHERE NOT EXISTS (SELECT 1 FROM wvb_kv WHERE key = column1 AND {_LIVE})"
            " AND NOT EXISTS (SELECT 1 FROM wvb_index WHERE name = column4)")


class SQLiteStore(LockingStore):
    """Key/value table in one SQLite file; expired rows are ignored on read and purged now and then."""

    checkpoint_every = 500  # this process's writes between checkpoints that rewind the WAL
    checkpoint_retry = 100  # writes until the next try when a checkpoint could not rewind it

    def __init__(self, path: str, prefix: str = "wvb:", *, busy_timeout_s: float = 10.0) -> None:
        super().__init__(prefix)
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._memory = path == MEMORY
        self._process_conn: tuple[int, sqlite3.Connection] | None = None  # (pid, this process's connection)
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        self._opened_lock = threading.Lock()
        self._use_lock = threading.RLock()  # one thread at a time uses the connection (a transaction, a statement)
        self._use_pid = os.getpid()
        self._closed = False
        self._checkpoint_conn: tuple[int, sqlite3.Connection] | None = None
        self._checkpoint_at = self.checkpoint_every  # the write count at which the next checkpoint runs
        self._groups = WriteGroups(self._add_group)
        if not self._memory:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"sqlite store {path}: cannot create its directory: {exc}") from exc
        self.ping()  # fail at start-up, not on the first message, when the file is unusable

    # -- connections -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_s,
            isolation_level=None,  # autocommit: a single statement is its own transaction
            check_same_thread=False,  # close() may run on another thread
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            setup(conn, wal=not self._memory, busy_timeout_s=self.busy_timeout_s)
        except BaseException:
            conn.close()
            raise
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This process's connection (opened on first use, and again after a fork); call under ``_use``."""
        if self._closed:
            raise StoreError(f"sqlite store {self.path} is closed")
        pid = os.getpid()
        if self._process_conn is None or self._process_conn[0] != pid:
            conn = self._connect()  # never reuse the parent's
            self._process_conn = (pid, conn)
            with self._opened_lock:
                self._opened.append((pid, conn))
        return self._process_conn[1]

    def _use(self) -> threading.RLock:
        """The lock that gives one thread the connection: a forked child gets a new one (a thread of its parent
        may have held the old one at the fork, and that thread does not exist in the child)."""
        pid = os.getpid()
        if self._use_pid != pid:
            with fork_lock():
                if self._use_pid != pid:
                    self._use_lock, self._use_pid = threading.RLock(), pid
        return self._use_lock

    def _run(self, op: Callable[[], T]) -> T:
        """Run ``op`` with this process's connection to itself (close() waits for it), errors as StoreError."""
        with self._use():
            if self._closed:
                raise StoreError(f"sqlite store {self.path} is closed")
            try:
                return op()
            except sqlite3.Error as exc:
                from bot.ops.metrics import STORE_ERRORS, labelled
                labelled(STORE_ERRORS, "sqlite").inc()
                raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def _statement_write(self, sql: str, params: Callable[[float], tuple[object, ...]]) -> int:
        """A write that is one statement (its own transaction) with ``params(now)``: how many rows it changed."""
        return self._run(lambda: self._conn().execute(sql, params(self._statement_time())).rowcount)

    def _row(self, sql: str, params: tuple[object, ...]) -> tuple | None:
        return self._run(lambda: self._conn().execute(sql, params).fetchone())

    # -- what LockingStore needs for the other operations -------------------------------------------
    def _write(self, op: Callable[[float], T]) -> T:
        def transaction() -> T:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = op(self._writing())
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        return self._run(transaction)

    def _read(self, op: Callable[[], T]) -> T:
        return self._run(op)  # a single SELECT is already atomic

    def _load(self, key: str, now: float) -> Entry | None:
        row = self._conn().execute(f"SELECT value, expires_at FROM wvb_kv WHERE key = ? AND {_LIVE}",
                                   (key, now)).fetchone()
        return None if row is None else (row[0], row[1])

    def _save(self, key: str, value: str, expires_at: float | None) -> None:
        self._conn().execute("INSERT OR REPLACE INTO wvb_kv (key, value, expires_at) VALUES (?, ?, ?)",
                             (key, value, expires_at))

    def _drop(self, key: str) -> None:
        self._conn().execute("DELETE FROM wvb_kv WHERE key = ?", (key,))

    def _purge(self, now: float) -> None:
        self._conn().execute("DELETE FROM wvb_kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))

    def _index_put(self, index: str, member: str, score: float | None) -> None:
        if score is None:
            self._conn().execute("DELETE FROM wvb_index WHERE name = ? AND member = ?", (index, member))
        else:
            self._conn().execute("INSERT OR REPLACE INTO wvb_index (name, member, score) VALUES (?, ?, ?)",
                                 (index, member, score))

    def _index_score(self, index: str, member: str) -> float | None:
        row = self._conn().execute("SELECT score FROM wvb_index WHERE name = ? AND member = ?",
                                   (index, member)).fetchone()
        return None if row is None else row[0]

    def _index_range(self, index: str, until: float, limit: int) -> list[tuple[str, float]]:
        rows = self._conn().execute("SELECT member, score FROM wvb_index WHERE name = ? AND score <= ?"
                                    " ORDER BY score, member LIMIT ?", (index, until, limit)).fetchall()
        return [(m, s) for m, s in rows]

    # -- the hot operations, one statement each ----------------------------------------------------
    def _statement_time(self) -> float:
        """``_writing()`` (the write's time, a purge now and then) for a one-statement write, and now and then a
        checkpoint: before the statement, so never inside a transaction of this connection."""
        now = self._writing()
        if self._writes >= self._checkpoint_at and not self._memory:
            self._checkpoint()
        return now

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and let it start over. SQLite's automatic checkpoints (off: see
        ``sqlite_schema.setup``) copy what they can but never rewind the WAL while writes keep coming: under steady load it
        grew by every page written (~25 KB a message, 500 MB in a 20,000-message test), and every commit past
        1,000 pages ran another checkpoint. RESTART holds new writers back for the copy (a few ms) and waits
        up to 0.1 s for the readers; when it cannot have them (busy, or the lock not had), it tries again 100
        writes later, not 500: each missed rewind lets the WAL grow by another interval's pages."""
        self._checkpoint_at = self._writes + self.checkpoint_every  # first, so that other threads do not start one
        try:
            busy = self._run(lambda: self._checkpointer().execute("PRAGMA wal_checkpoint(RESTART)").fetchone())[0]
        except StoreError as exc:
            busy, why = 1, str(exc)
        else:
            why = "readers or writers held on past 0.1 s"
        if busy:
            self._checkpoint_at = self._writes + self.checkpoint_retry
            log.debug("sqlite store %s: checkpoint postponed: %s", self.path, why)

    def _checkpointer(self) -> sqlite3.Connection:
        """This process's connection for checkpoints: it waits at most 0.1 s for the readers and writers."""
        pid = os.getpid()
        if self._checkpoint_conn is None or self._checkpoint_conn[0] != pid:
            conn = sqlite3.connect(self.path, timeout=0.1, isolation_level=None, check_same_thread=False)
            with self._opened_lock:
                self._opened.append((pid, conn))
            self._checkpoint_conn = (pid, conn)
        return self._checkpoint_conn[1]

    def _one_index_op(self, index: Sequence[IndexOp]) -> tuple[str | None, str | None, float | None]:
        if not index:
            return None, None, None
        name, member, score = index[0]
        return self._ix(name), member, None if score is None else float(score)

    def get(self, key: str) -> str | None:
        row = self._row(f"SELECT value FROM wvb_kv WHERE key = ? AND {_LIVE}", (self._k(key), self._now()))
        return None if row is None else row[0]

    def get_peeking(self, key: str, peek: str) -> tuple[str | None, bool]:
        row = self._row(f"SELECT (SELECT value FROM wvb_kv WHERE key = ? AND {_LIVE}),"
                        " EXISTS (SELECT 1 FROM wvb_index WHERE name = ?)", (self._k(key), self._now(), self._ix(peek)))
        return (None, False) if row is None else (row[0], bool(row[1]))

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        ttl, full = check_ttl(ttl), self._k(key)
        self._statement_write("INSERT OR REPLACE INTO wvb_kv (key, value, expires_at) VALUES (?, ?, ?)",
                              lambda now: (full, value, self._deadline(now, ttl)))

    # Insert unless a live row has the key; an expired one is replaced. (OR REPLACE, not an upsert: a trigger's
    # own conflict clause gives way to the outer statement's, and the index entry may exist already.)
    _ADD = ("INSERT OR REPLACE INTO wvb_kv (key, value, expires_at, ix_name, ix_member, ix_score, peek)"
            f" SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM wvb_kv WHERE key = ? AND {_LIVE})")

    def add(self, key: str, value: str, ttl: float | None = None, *, index: Sequence[IndexOp] = ()) -> bool:
        if len(index) > 1:
            return super().add(key, value, ttl, index=index)
        return self._add(key, value, ttl, index, None)[0]

    def add_if_empty(self, key: str, value: str, ttl: float | None = None, *, empty: str) -> bool:
        # the fast path's one write, made by every thread at once under load: grouped (bot/store/groups.py)
        return self._groups.join(Member(self._k(key), value, check_ttl(ttl), self._ix(empty)))

    def _add_group(self, group: list[Member]) -> None:
        first: dict[str, Member] = {}
        for m in group:  # a copy in the same group: the first one's write decides, the others are not written
            first.setdefault(m.key, m)
        members = list(first.values())

        def op() -> None:
            now = self._statement_time()
            conn = self._conn()
            values = [v for m in members for v in (m.key, m.value, self._deadline(now, m.expires_in), m.condition)]
            added = conn.execute(_add_if_empty_sql(len(members)), (*values, now)).rowcount
            if added == len(members):
                for m in members:
                    m.written = True
                return
            # Some were refused: the rows that hold our values now are ours — unless another process wrote one
            # of those keys with the very same value (a copy of the message, answered alike): then which are
            # ours cannot be told, and none counts as written (each caller answers from the record, as a copy).
            found = dict(conn.execute(f"SELECT key, value FROM wvb_kv WHERE key IN ({', '.join('?' * len(members))})"
                                      f" AND {_LIVE}", (*first, now)).fetchall())
            ours = [m for m in members if found.get(m.key) == m.value]
            for m in ours:
                m.written = len(ours) == added
        self._run(op)

    def add_peeking(self, key: str, value: str, ttl: float | None = None, *, index: Sequence[IndexOp] = (),
                    peek: str) -> tuple[bool, bool]:
        if len(index) > 1 or (index and index[0][2] is None):  # only an index entry put is one known change
            return super().add_peeking(key, value, ttl, index=index, peek=peek)
        return self._add(key, value, ttl, index, self._ix(peek))

    def _add(self, key: str, value: str, ttl: float | None, index: Sequence[IndexOp],
             peek: str | None) -> tuple[bool, bool]:
        ttl, full = check_ttl(ttl), self._k(key)

        def op() -> tuple[bool, bool]:
            now = self._statement_time()
            conn = self._conn()
            before = conn.total_changes if peek else 0
            added = conn.execute(self._ADD, (full, value, self._deadline(now, ttl), *self._one_index_op(index),
                                             peek, full, now)).rowcount == 1
            # the row and its index entry (a row or entry replaced counts once); one more: the peek trigger
            # found a member
            return added, bool(added and peek and conn.total_changes - before > 1 + len(index))
        return self._run(op)

    def compare_and_set(
        self, key: str, expected: str | None, value: str, ttl: float | None = None, *,
        index: Sequence[IndexOp] = (),
    ) -> bool:
        if expected is None or len(index) > 1:  # an add (one statement too), or several index changes
            return super().compare_and_set(key, expected, value, ttl, index=index)
        ttl, full = check_ttl(ttl), self._k(key)
        return self._statement_write(
            "UPDATE wvb_kv SET value = ?, expires_at = ?, ix_name = ?, ix_member = ?, ix_score = ?, peek = NULL"
            f" WHERE key = ? AND value = ? AND {_LIVE}",
            lambda now: (value, self._deadline(now, ttl), *self._one_index_op(index), full, expected, now)) == 1

    def compare_and_delete(self, key: str, expected: str) -> bool:
        full = self._k(key)
        return self._statement_write(f"DELETE FROM wvb_kv WHERE key = ? AND value = ? AND {_LIVE}",
                                     lambda now: (full, expected, now)) == 1

    def delete(self, key: str) -> None:
        full = self._k(key)
        self._statement_write("DELETE FROM wvb_kv WHERE key = ?", lambda now: (full,))

    # -- lifecycle ---------------------------------------------------------------------------------
    def ping(self) -> None:
        self._row("SELECT 1 FROM wvb_kv LIMIT 1", ())

    def close(self) -> None:
        """Close this process's connections (a forked child never closes its parent's)."""
        pid, use = os.getpid(), self._use()
        had = use.acquire(timeout=self.busy_timeout_s)  # closing a connection in use crashes: wait for it
        try:
            self._closed = True
            with self._opened_lock:
                mine = [c for p, c in self._opened if p == pid]
                self._opened = [(p, c) for p, c in self._opened if p != pid]
        finally:
            if had:
                use.release()
        for conn in mine:
            try:
                conn.close()
            except sqlite3.Error:
                pass
