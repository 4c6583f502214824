"""A message's delivery record: its state, and everything a process needs to carry its answer.

The record lives in the store under ``dl:<dedupe key>`` as JSON, compared as the exact string read (every
change is a compare-and-set from the string read: :mod:`bot.delivery.states` makes them all), readable with
``redis-cli`` or ``sqlite3`` when you need to see where a message is.
"""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from wechatpy import parse_message

from bot.core.answer import Answer
from bot.core.envelope import Inbound
from bot.ops.trace import Trace


class State(enum.StrEnum):
    """Where a message's answer is (README "Delivery" draws the moves between them)."""

    RUNNING = "running"  # a job works on the answer; ``owner`` names the run
    DONE = "done"  # the answer is ready; a try of the message may carry it
    SENDING = "sending"  # going out by customer service: ``owner`` sends ``kept``, ``sent`` of them are through
    DELIVERED = "delivered"  # it went; ``via`` says how: passive, retry, customer_service, pickup
    PENDING = "pending"  # kept for pickup with the user's next message (``kept`` holds the parts not shown)
    EXPIRED = "expired"  # kept, and not picked up within ``[reply] pickup_ttl_s``
    UNDELIVERABLE = "undeliverable"  # no way out: an answer with no user to go to (``reason`` says)


FINAL = frozenset({State.DELIVERED, State.EXPIRED, State.UNDELIVERABLE})
OPEN = "open"  # the index of records a process should look at without a request: member = key, score = when

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def pickup_index(openid: str) -> str:
    """The index of one user's answers kept for pickup: member = key, score = when the message came."""
    return f"pickup:{openid}"


@dataclass(frozen=True)
class Record:
    """The job record; it is compared as the exact string read, so always move from ``raw``."""

    state: State
    created: float  # when WeChat sent the first try (wall clock): every process and machine agrees on it
    owner: str | None = None  # who runs the job while it is running (see bot.delivery.leases)
    since: float | None = None  # wall clock when ``owner`` took the record (claim: ``created``)
    late: bool = False  # no try will carry the answer passively any more: the job sends it itself
    answer: Answer | None = None  # done: the answer; delivered passively: what the try carried (for a retry)
    via: str | None = None  # delivered: how
    reason: str | None = None  # expired, undeliverable: why (for the log line and a person reading the store)
    trace: Trace | None = None  # the job's steps and outcome, for the bot.message line (bot/ops/trace.py)
    openid: str | None = None  # the sender: late answers go to them, pickups are listed per user
    push: str | None = None  # the push XML while running: whoever takes a dead owner's job over runs it again
    kept: Answer | None = None  # pending: the parts not shown yet, in order; sending: every part to send
    total: int | None = None  # how many parts the answer has, when it was split
    kept_at: float | None = None  # wall clock when it was kept for pickup
    partial: str | None = None  # a streamed answer while running: its complete sentences so far
    seen: str | None = None  # what tries already showed of a streamed answer's text (the rest follows)
    waited: float | None = None  # how long the first try waited in the queue before a thread took it
    sent: int | None = None  # sending: how many of ``kept`` customer service has taken (a new sender resumes there)

    def dump(self) -> str:
        data: dict[str, Any] = {}
        for k, v in vars(self).items():  # vars(), not dataclasses.asdict: asdict deep-copies every field
            if v is None or v is False:
                continue
            if isinstance(v, Answer):
                v = v.to_json()
            elif isinstance(v, Trace):
                v = v.to_json()
            data[k] = v
        return _encode(data)

    @classmethod
    def load(cls, raw: str | None) -> Record | None:
        if raw is None:
            return None
        data = json.loads(raw)
        data["state"] = State(data["state"])
        for name in ("answer", "kept"):
            if name in data:
                data[name] = Answer.from_json(data[name])
        if "trace" in data:
            data["trace"] = Trace.from_json(data["trace"])
        return cls(**data)

    def but(self, **changes: Any) -> Record:
        return Record(**{**vars(self), **changes})  # dataclasses.replace validates each field: slower

    def unseen(self) -> str | None:
        """The sentences written so far that no try has shown; None when they do not continue what was shown
        (a run that took the job over writes its own words)."""
        partial, seen = self.partial or "", self.seen or ""
        return partial[len(seen):] if partial.startswith(seen) else None

    @property
    def msg_id(self) -> str | None:
        return self.trace.msg_id if self.trace is not None else None


def dedupe_key(inbound: Inbound) -> str:
    """``Inbound.key``, plus the event name and key for events: two different events a user triggers within
    one second (subscribe, then scan) share ``FromUserName+CreateTime`` but must both be answered."""
    if not inbound.key.startswith("e:"):
        return inbound.key
    data = inbound.data
    return f"{inbound.key}:{data.get('Event', '')}:{data.get('EventKey') or ''}"


def msg_id_of(key: str, record: Record | None = None) -> str:
    """The message id for log lines: the trace's, else the dedupe key's (``m:<MsgId>``)."""
    traced = record.msg_id if record is not None else None
    return str(traced or key.partition(":")[2] or key)


def inbound_from_xml(push_xml: str) -> Inbound:
    """Rebuild a job's message from the decrypted push (replies are sealed per request, not here)."""
    return Inbound(message=parse_message(push_xml), encrypted=False, nonce="", xml=push_xml)
