"""Embedded store shared by several worker processes on one machine (the default).

A single SQLite file in WAL mode lets gunicorn workers share dedupe keys, leases and the access token
without running a server. Read-modify-write operations run inside ``BEGIN IMMEDIATE`` so they are atomic
across threads and processes; each thread (and each forked process) gets its own connection because
SQLite connections must not cross a fork.
"""
from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from bot.store.base import Entry, LockingStore, StoreError

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS wvb_kv ("
    " key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS wvb_index ("
    " name TEXT NOT NULL, member TEXT NOT NULL, score REAL NOT NULL, PRIMARY KEY (name, member)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS wvb_index_by_score ON wvb_index (name, score)",
)

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


class SQLiteStore(LockingStore):
    """Key/value table in one SQLite file; expired rows are ignored on read and purged now and then."""

    def __init__(self, path: str, prefix: str = "wvb:", *, busy_timeout_s: float = 10.0) -> None:
        super().__init__(prefix)
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._memory = path == MEMORY
        self._local = threading.local()
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        self._opened_lock = threading.Condition()  # also counts operations in flight (close waits)
        self._inflight = 0
        # ":memory:" is one private database per connection, so that mode shares one connection.
        self._shared_lock = threading.RLock() if self._memory else None
        self._closed = False
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
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # close() may run on another thread
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            self._setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        """WAL mode and the table, retried: when several workers open a new file at once, switching
        the journal mode can report "database is locked" without waiting for the busy timeout."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                if not self._memory:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                for statement in _SCHEMA:
                    conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.03))

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"sqlite store {self.path} is closed")
        if self._memory and self._opened:
            return self._opened[0][1]
        pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == pid:
            return conn
        conn = self._connect()  # new thread, or first use after a fork (never reuse the parent's)
        self._local.conn, self._local.pid = conn, pid
        with self._opened_lock:
            self._opened.append((pid, conn))
        return conn

    @contextmanager
    def _locked(self, write: bool) -> Iterator[None]:
        with self._opened_lock:  # close() waits for operations in flight: closing a connection in use crashes
            if self._closed:
                raise StoreError(f"sqlite store {self.path} is closed")
            self._inflight += 1
        try:
            with self._shared_lock or nullcontext():
                conn = self._conn()
                if not write:
                    yield  # a single SELECT is already atomic
                    return
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            from bot.ops.metrics import STORE_ERRORS, labelled
            labelled(STORE_ERRORS, "sqlite").inc()
            raise StoreError(f"sqlite store {self.path}: {exc}") from exc
        finally:
            with self._opened_lock:
                self._inflight -= 1
                self._opened_lock.notify_all()

    # -- primitives for LockingStore ---------------------------------------------------------------
    def _load(self, key: str, now: float) -> Entry | None:
        row = self._conn().execute(
            "SELECT value, expires_at FROM wvb_kv"
            " WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (key, now),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _save(self, key: str, value: str, expires_at: float | None) -> None:
        self._conn().execute(
            "INSERT OR REPLACE INTO wvb_kv (key, value, expires_at) VALUES (?, ?, ?)",
            (key, value, expires_at),
        )

    def _drop(self, key: str) -> None:
        self._conn().execute("DELETE FROM wvb_kv WHERE key = ?", (key,))

    def _purge(self, now: float) -> None:
        self._conn().execute(
            "DELETE FROM wvb_kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        )

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

    # -- lifecycle ---------------------------------------------------------------------------------
    def ping(self) -> None:
        with self._locked(write=False):
            self._conn().execute("SELECT 1 FROM wvb_kv LIMIT 1").fetchall()

    def close(self) -> None:
        """Close this process's connections (a forked child never closes its parent's)."""
        pid = os.getpid()
        with self._opened_lock:
            self._closed = True
            self._opened_lock.wait_for(lambda: self._inflight == 0, timeout=self.busy_timeout_s)
            mine = [c for p, c in self._opened if p == pid]
            self._opened = [(p, c) for p, c in self._opened if p != pid]
        for conn in mine:
            try:
                conn.close()
            except sqlite3.Error:
                pass
