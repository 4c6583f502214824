"""The per-message job record delivery keeps in the store, and the key it is kept under.

The record is JSON, written and compared as an exact string (every change is a compare-and-set from the
string read), readable with ``redis-cli`` or ``sqlite3`` when you need to see where a message is.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wechatpy import parse_message

from bot.core.envelope import Inbound
from bot.ops.trace import Trace

RUNNING, DONE, DELIVERED, UNDELIVERABLE = "running", "done", "delivered", "undeliverable"
PENDING, EXPIRED = "pending", "expired"  # kept for pickup with the user's next message; not picked up in time
FINAL = (DELIVERED, UNDELIVERABLE, EXPIRED)
OPEN = "open"  # the index of records a process should look at without a request: member = key, score = when


def pickup_index(openid: str) -> str:
    """The index of one user's answers kept for pickup: member = key, score = when the message came."""
    return f"pickup:{openid}"
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # json.dumps(...) builds one per call


@dataclass(frozen=True)
class Record:
    """The job record; it is compared as the exact string read, so always CAS from ``raw``."""

    state: str
    created: float  # wall clock of the first try: every process and machine agrees on it
    owner: str | None = None  # who runs the job while it is running (see bot.delivery.leases)
    late: bool = False  # the last chance for a passive answer passed: the job must send it itself
    reply: str | None = None  # reply XML (plaintext; each try encrypts it for its own request)
    via: str | None = None
    reason: str | None = None
    trace: Trace | None = None  # the job's steps and outcome, for the bot.message line (bot/ops/trace.py)
    openid: str | None = None  # the sender: late answers go to them, pickups are listed per user
    push: str | None = None  # the push XML while running: whoever takes a dead owner's job over runs it again
    parts: list[str] | None = None  # pending: the reply XMLs not yet shown, in order
    total: int | None = None  # how many parts the answer has, when it was split
    kept: float | None = None  # wall clock when it was kept for pickup
    partial: str | None = None  # a streamed answer while running: its complete sentences so far
    shown: int | None = None  # how much of a streamed answer's text a try already showed (the rest follows)

    def dump(self) -> str:
        # vars(), not dataclasses.asdict: asdict deep-copies every field, which showed up in profiles
        return _encode({k: v for k, v in vars(self).items() if v is not None and v is not False})

    @classmethod
    def load(cls, raw: str | None) -> Record | None:
        return None if raw is None else cls(**json.loads(raw))

    def but(self, **changes: Any) -> Record:
        return Record(**{**vars(self), **changes})  # dataclasses.replace validates each field: slower


def dedupe_key(inbound: Inbound) -> str:
    """``Inbound.key``, plus the event name and key for events: two different events a user triggers within
    one second (subscribe, then scan) share ``FromUserName+CreateTime`` but must both be answered."""
    if not inbound.key.startswith("e:"):
        return inbound.key
    data = inbound.data
    return f"{inbound.key}:{data.get('Event', '')}:{data.get('EventKey') or ''}"


def msg_id_of(key: str, record: Record | None = None) -> str:
    """The message id for log lines: the trace's, else the dedupe key's (``m:<MsgId>``)."""
    traced = (record.trace or {}).get("msg_id") if record is not None else None
    return str(traced or key.partition(":")[2] or key)


def inbound_from_xml(push_xml: str) -> Inbound:
    """Rebuild a job's message from the decrypted push (replies are sealed per request, not here)."""
    return Inbound(message=parse_message(push_xml), encrypted=False, nonce="", xml=push_xml)
