"""Pickup: answers no request could carry wait, per message, for the user's next message of any kind.

Most accounts have no customer-service API, so an answer ready after WeChat's last try has nowhere to go.
It is kept under its own message (state ``pending``, with the parts not yet shown) and listed in the user's
pickup index, oldest first. The next message the user sends is routed as usual; when its own answer is
ready in that try, the kept answers go first in the same passive reply, then the new one, within the byte
limit. Each kept part is claimed by one compare-and-set before it is shown: never twice, even with two of
the user's messages in flight. A kept answer expires after ``[reply] pickup_ttl_s`` (the sweeper says so).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from bot.core.text import utf8_len
from bot.delivery.ledger import Ledger, closed, listed, open_at, unlisted
from bot.delivery.parts import SEPARATOR, text_of
from bot.delivery.record import DELIVERED, PENDING, Record, msg_id_of, pickup_index
from bot.ops.metrics import KEPT, PICKUPS, labelled

log = logging.getLogger("bot.delivery")


@dataclass
class Claimed:
    """Kept parts claimed for one reply: their texts in order, and what to undo or report."""

    texts: list[str] = field(default_factory=list)
    reply: str | None = None  # a kept part that is not text: it is the whole reply, alone
    more: bool = False  # older kept parts remain: a newer answer must wait behind them
    undo: list[tuple[str, str, str, Record]] = field(default_factory=list)  # key, raw before, raw after, record
    finished: list[Record] = field(default_factory=list)  # answers whose last part this reply shows

    def __bool__(self) -> bool:
        return bool(self.texts or self.reply)


class Pickup:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.store = ledger.store

    def keep(self, key: str, raw: str, record: Record, parts: list[str], why: str) -> bool:
        """Keep ``parts`` (reply XMLs, in order) of the answer in ``record`` for pickup; one CAS from ``raw``."""
        now = time.time()
        new = record.but(state="pending", parts=parts, kept=now, reply=None, push=None, owner=None, late=False,
                         total=record.total or len(parts))
        if not record.openid:
            log.error("delivery %s: an answer without its user cannot be kept for pickup", key)
            return False
        if self.ledger.swap(key, raw, new, open_at(key, self.ledger.expires(new)),
                            listed(record.openid, key, record.created)):
            labelled(KEPT, why).inc()
            log.info("delivery msg_id=%s answer kept for pickup (%s, %d part(s))", msg_id_of(key, record), why,
                     len(parts))
            return True
        return False

    def claim(self, openid: str, limit: int, exclude: str) -> Claimed:
        """Claim the user's kept parts, oldest first, that fit in one text of ``limit`` bytes (the first
        part alone if it is not text). Stops after a split answer's part: its next part comes next time."""
        claimed = Claimed()
        index = pickup_index(openid)
        for member, score in self.store.index_range(index, limit=32):
            if member == exclude:
                continue
            raw, record = self.ledger.read(member)
            if raw is None or record is None or record.state != PENDING or not record.parts:
                self.store.index_discard(index, member, score)  # picked up, expired or gone meanwhile
                continue
            part, rest = record.parts[0], record.parts[1:]
            text = text_of(part)
            if text is None and claimed:
                claimed.more = True
                break
            if text is not None and utf8_len(SEPARATOR.join([*claimed.texts, text])) > limit:
                claimed.more = True
                break
            new = record.but(parts=rest) if rest else record.but(state=DELIVERED, via="pickup", parts=None)
            changes = () if rest else (closed(member), unlisted(openid, member))
            if not self.ledger.swap(member, raw, new, *changes):
                continue  # another of the user's messages took it
            claimed.undo.append((member, raw, new.dump(), record))
            if not rest:
                claimed.finished.append(new)
            if text is None:
                claimed.reply = part
            else:
                claimed.texts.append(text)
            if rest or text is None:
                claimed.more = bool(rest) or any(m != exclude for m, _ in self.store.index_range(index, limit=2))
                break
        return claimed

    def release(self, claimed: Claimed) -> None:
        """Put claimed parts back (the reply they were meant for did not go out)."""
        for key, before, after, record in reversed(claimed.undo):
            if not self.store.compare_and_set(self.ledger.rkey(key), after, before, ttl=self.ledger.ttl(record),
                                              index=[open_at(key, self.ledger.expires(record)),
                                                     listed(record.openid or "", key, record.created)]):
                log.error("delivery %s: a kept answer could not be put back after its reply failed", key)

    def shown(self, claimed: Claimed) -> None:
        """The reply with the claimed parts went out: count them, and log the answers now complete."""
        PICKUPS.inc(len(claimed.undo))
        now = time.time()
        for record in claimed.finished:
            self.ledger.done(record.trace or {"msg_id": "?", "outcome": "unfinished"}, "pickup", parts=record.total,
                 waited_s=now - (record.kept or now))
