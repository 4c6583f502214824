"""The SQLite store's file: its tables, the triggers its one-statement writes rely on, and a connection's setup
(see bot/store/sqlite.py for why the writes are shaped so)."""
from __future__ import annotations

import random
import sqlite3
import time

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS wvb_kv ("
    " key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL, ix_name TEXT, ix_member TEXT, ix_score REAL,"
    " peek TEXT) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS wvb_index ("
    " name TEXT NOT NULL, member TEXT NOT NULL, score REAL NOT NULL, PRIMARY KEY (name, member)) WITHOUT ROWID",
    # No index by score: each index change would write one more page. index_range reads one index's members
    # (the records in flight, a user's pickups: few) and sorts them.
    "DROP INDEX IF EXISTS wvb_index_by_score",
)
# A write's one index change rides in its row's ix_* columns (score NULL: remove the member); the triggers
# apply it in the same statement. A write with several index changes runs as a transaction instead.
_APPLY_IX = (
    " DELETE FROM wvb_index WHERE NEW.ix_score IS NULL AND name = NEW.ix_name AND member = NEW.ix_member;"
    " INSERT OR REPLACE INTO wvb_index (name, member, score)"
    "  SELECT NEW.ix_name, NEW.ix_member, NEW.ix_score WHERE NEW.ix_score IS NOT NULL;"
)
_TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS wvb_kv_ix_{event.lower()} AFTER {event} ON wvb_kv"
    f" WHEN NEW.ix_name IS NOT NULL BEGIN{_APPLY_IX} END" for event in ("INSERT", "UPDATE"))
_IX_COLUMNS = {"ix_name": "TEXT", "ix_member": "TEXT", "ix_score": "REAL", "peek": "TEXT"}
# add_peeking: the index named in the new row's peek column is looked at in the same statement, by a trigger of
# this connection's own (TEMP) that writes one row of a TEMP table when it has a member: one more change in the
# connection's count, read without another statement.
_PEEK = (
    "PRAGMA temp_store=MEMORY",
    "CREATE TEMP TABLE IF NOT EXISTS wvb_peeked (id INTEGER PRIMARY KEY)",
    "CREATE TEMP TRIGGER IF NOT EXISTS wvb_kv_peek AFTER INSERT ON main.wvb_kv"
    " WHEN NEW.peek IS NOT NULL AND EXISTS (SELECT 1 FROM main.wvb_index WHERE name = NEW.peek)"
    " BEGIN INSERT OR REPLACE INTO wvb_peeked (id) VALUES (1); END",
)


def setup(conn: sqlite3.Connection, *, wal: bool, busy_timeout_s: float) -> None:
    """WAL mode, the tables and triggers, retried: when several workers open a new file at once,
    switching the journal mode can report "database is locked" without waiting for the busy timeout."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            if wal:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint=0")  # our own checkpoints rewind it (_checkpoint)
                # A rewound WAL longer than 8 MB is cut back to 8 MB (one checkpoint interval of a busy store is
                # ~7 MB): writes go on while a checkpoint copies, so a slow copy can leave a longer file.
                conn.execute(f"PRAGMA journal_size_limit={8 << 20}")
            for statement in _SCHEMA:
                conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(wvb_kv)")}
            for column, kind in _IX_COLUMNS.items():
                if column not in columns:  # a file made by an earlier version
                    conn.execute(f"ALTER TABLE wvb_kv ADD COLUMN {column} {kind}")
            for statement in (*_TRIGGERS, *_PEEK):
                conn.execute(statement)
            return
        except sqlite3.OperationalError as exc:
            if "duplicate column" in str(exc):
                continue  # another worker added it first
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.03))

