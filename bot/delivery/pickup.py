"""Pickup: answers no request could carry wait, per message, for the user's next message of any kind.

Most accounts have no customer-service API, so an answer ready after WeChat's last try has nowhere to go.
It is kept under its own message (state ``pending``, with the parts not yet shown) and listed in the user's
pickup index, oldest first. The next message the user sends is routed as usual; when its own answer is
ready in that try, the kept answers go first in the same passive reply, then the new one, within the byte
limit. Each kept part is claimed by one move (``pick_up``) before it is shown: never twice, even with two of
the user's messages in flight. A kept answer expires after ``[reply] pickup_ttl_s`` (the sweeper says so).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bot.core.answer import Answer, Part, Text
from bot.core.text import utf8_len
from bot.delivery.outcome import Outcomes
from bot.delivery.parts import SEPARATOR
from bot.delivery.record import Record, State, msg_id_of
from bot.delivery.states import Actor, States
from bot.ops.metrics import KEPT, PICKUPS, labelled
from bot.ops.trace import Trace

log = logging.getLogger("bot.delivery")


@dataclass
class Claimed:
    """Kept parts claimed for one reply: their texts in order, and what to undo or report."""

    texts: list[str] = field(default_factory=list)
    reply: Part | None = None  # a kept part that is not text: it is the whole reply, alone
    more: bool = False  # older kept parts remain: a newer answer must wait behind them
    undo: list[tuple[str, Record, str, Record]] = field(default_factory=list)  # key, before, raw after, after
    finished: list[Record] = field(default_factory=list)  # answers whose last part this reply shows

    def __bool__(self) -> bool:
        return bool(self.texts or self.reply)


class Pickup:
    def __init__(self, states: States, outcomes: Outcomes) -> None:
        self.states, self.outcomes = states, outcomes

    def keep(self, actor: Actor, key: str, raw: str, record: Record, parts: list[Part], why: str) -> bool:
        """Keep ``parts`` (in order) of the answer in ``record`` for pickup: one move from ``raw``. An answer
        with nobody to give it to is undeliverable (a push without a sender)."""
        if not record.openid:
            log.error("delivery msg_id=%s: an answer without its user cannot be kept for pickup", msg_id_of(key, record))
            if self.states.undeliverable(actor, key, raw, record, "the push named no user to keep the answer for"):
                self.outcomes.done(record.trace or Trace(msg_id_of(key, record)), "undeliverable",
                                   reason="no user to keep the answer for", answer=record.answer)
                return True
            return False
        if self.states.keep(actor, key, raw, record, Answer(tuple(parts))):
            labelled(KEPT, why).inc()
            log.info("delivery msg_id=%s answer kept for pickup (%s, %d part(s))", msg_id_of(key, record), why,
                     len(parts))
            return True
        return False

    def claim(self, openid: str, limit: int, exclude: str) -> Claimed:
        """Claim the user's kept parts, oldest first, that fit in one text of ``limit`` bytes (the first
        part alone if it is not text). Stops after a split answer's part: its next part comes next time."""
        claimed = Claimed()
        for member, score in self.states.kept_for(openid, limit=32):
            if member == exclude:
                continue
            raw, record = self.states.read(member)
            if raw is None or record is None or record.state is not State.PENDING or not record.kept:
                self.states.forget_kept(openid, member, score)  # picked up, expired or gone meanwhile
                continue
            part, rest = record.kept.parts[0], record.kept.parts[1:]
            text = part.content if isinstance(part, Text) else None
            if text is None and claimed:
                claimed.more = True
                break
            if text is not None and utf8_len(SEPARATOR.join([*claimed.texts, text])) > limit:
                claimed.more = True
                break
            new = self.states.pick_up(member, raw, record)
            if new is None:
                continue  # another of the user's messages took it
            claimed.undo.append((member, record, new.dump(), new))
            if not rest:
                claimed.finished.append(new)
            if text is None:
                claimed.reply = part
            else:
                claimed.texts.append(text)
            if rest or text is None:
                claimed.more = bool(rest) or any(m != exclude for m, _ in self.states.kept_for(openid, limit=2))
                break
        return claimed

    def release(self, claimed: Claimed) -> None:
        """Put claimed parts back (the reply they were meant for did not go out)."""
        for key, before, after_raw, after in reversed(claimed.undo):
            if not self.states.put_back(key, after_raw, after, before):
                log.error("delivery %s: a kept answer could not be put back after its reply failed", key)

    def shown(self, claimed: Claimed) -> None:
        """The reply with the claimed parts went out: count them, and log the answers now complete."""
        PICKUPS.inc(len(claimed.undo))
        now = self.states.clock.time()
        for record in claimed.finished:
            self.outcomes.done(record.trace or Trace("?"), "pickup", parts=record.total,
                               waited_s=now - (record.kept_at or now), answer=record.answer)
