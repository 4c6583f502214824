"""The delivery records of one bot in its store: read them, and change each with one compare-and-set.

Every module of delivery (the per-try engine, late answers, pickup, the sweeper) changes records only here,
so every transition is one atomic store operation, and the indexes that let a process find records without
a request (``open``, and each user's pickups) change in that same operation.
"""
from __future__ import annotations

import time

from bot.config import ReplyConfig
from bot.delivery.outcome import Outcomes
from bot.delivery.record import OPEN, PENDING, Record, pickup_index
from bot.store import Store
from bot.store.base import IndexOp


class Ledger:
    def __init__(self, store: Store, config: ReplyConfig, hold_margin_s: float, outcomes: Outcomes) -> None:
        self.store, self.config, self.hold_margin_s = store, config, hold_margin_s
        self.done = outcomes.done  # the end of a message's delivery: its log line, its material released

    @staticmethod
    def rkey(key: str) -> str:
        return f"dl:{key}"

    def read(self, key: str) -> tuple[str | None, Record | None]:
        raw = self.store.get(self.rkey(key))
        return raw, Record.load(raw)

    def add(self, key: str, record: Record) -> tuple[str | None, bool]:
        """Create the record (the first try of a message): its raw form, or None when it already exists; and
        whether the user may have answers kept for pickup (False: none, no need to look)."""
        raw = record.dump()
        index = [open_at(key, self.last_chance(record.created))]
        if not record.openid:
            return (raw if self.store.add(self.rkey(key), raw, ttl=self.config.state_ttl_s, index=index)
                    else None), False
        added, kept = self.store.add_peeking(self.rkey(key), raw, ttl=self.config.state_ttl_s, index=index,
                                             peek=pickup_index(record.openid))
        return (raw if added else None), kept

    def swap(self, key: str, raw: str, new: Record, *index: IndexOp) -> bool:
        """Replace the record read as ``raw`` with ``new`` (and apply ``index``); False if it moved meanwhile."""
        return self.store.compare_and_set(self.rkey(key), raw, new.dump(), ttl=self.ttl(new), index=index)

    def ttl(self, record: Record) -> float:
        """A record kept for pickup lives as long as the pickup may wait; others for ``state_ttl_s``."""
        if record.state == PENDING:
            return self.config.pickup_ttl_s + self.config.state_ttl_s
        return self.config.state_ttl_s

    def last_chance(self, created: float) -> float:
        """Wall clock after which no try of the message can answer it passively any more."""
        cfg = self.config
        tries = 1 if cfg.mode == "customer_service" else cfg.tries
        return created + tries * cfg.wechat_timeout_s + self.hold_margin_s

    def overdue(self, record: Record) -> bool:
        return record.late or time.time() > self.last_chance(record.created)

    def expires(self, record: Record) -> float:
        """When a record kept for pickup stops waiting."""
        return (record.kept or record.created) + self.config.pickup_ttl_s


def open_at(key: str, when: float) -> IndexOp:
    """Look at ``key`` again at ``when`` (wall clock), without a request."""
    return (OPEN, key, when)


def closed(key: str) -> IndexOp:
    return (OPEN, key, None)


def listed(openid: str, key: str, created: float) -> IndexOp:
    return (pickup_index(openid), key, created)


def unlisted(openid: str, key: str) -> IndexOp:
    return (pickup_index(openid), key, None)
