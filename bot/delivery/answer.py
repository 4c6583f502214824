"""The passive answer of one try: the user's kept answers first, then this message's, within the byte limit.

A passive reply is the cheapest way out and the only one on most accounts, so every try that answers also
carries what the user is owed: answers kept for pickup (oldest first), then this message's answer — or,
when it does not fit or must wait behind an older split answer, a note that more follows. A long answer's
first part goes now; the rest by customer service, or kept for pickup with ``more_marker``.
"""
from __future__ import annotations

from dataclasses import dataclass

from bot.config import ReplyConfig
from bot.core.answer import Answer, Part, Text
from bot.core.envelope import Inbound
from bot.core.text import split_text, utf8_len
from bot.delivery.customer_service import CustomerService
from bot.delivery.late import LateAnswers
from bot.delivery.outcome import Outcomes
from bot.delivery.parts import SEPARATOR, join_texts
from bot.delivery.pickup import Claimed, Pickup
from bot.delivery.record import Record
from bot.delivery.states import Actor, States
from bot.ops.trace import Trace


@dataclass(frozen=True)
class Say:
    """What a try answers: ``part`` as its passive reply, or ``success`` (None: WeChat shows nothing)."""

    part: Part | None


SUCCESS = Say(None)


class Answerer:
    def __init__(self, states: States, cs: CustomerService, pickup: Pickup, late: LateAnswers, outcomes: Outcomes,
                 config: ReplyConfig) -> None:
        self.states, self.cs, self.pickup, self.late = states, cs, pickup, late
        self.outcomes, self.config = outcomes, config

    def answer(self, key: str, raw: str, record: Record, answer: Answer, trace: Trace, inbound: Inbound, *,
               via: str, tries: int, nothing_kept: bool = False) -> Say | None:
        """Deliver ``answer`` (the record read as ``raw``: done, or running when this try ran the job) in this
        try's reply. None when the record moved meanwhile (the caller reads it again). ``nothing_kept``: the
        message's claim, a moment ago, saw no answers kept for its user (one look at the store saved)."""
        kept = Claimed() if nothing_kept else self._claim_kept(inbound, key)
        first = answer.parts[0] if len(answer.parts) == 1 else None
        if not kept and (first is None and not answer.parts or first is not None and not self._too_long(first)):
            if not self.states.answer(key, raw, record, answer, via):
                return None
            self.outcomes.done(trace, via, tries=tries, answer=answer)
            return Say(first)
        cs = self.cs.available(probe=True)  # a long answer: its first part says "more" only where it must
        parts = self.late.parts(answer, for_pickup=not cs)
        first_text = parts[0].content if parts and isinstance(parts[0], Text) else None
        shown: Part | None
        if kept and (kept.more or kept.reply or (parts and (first_text is None or utf8_len(
                join_texts([*kept.texts, first_text])) > self.config.max_text_bytes))):
            shown, rest = self._kept_reply(kept, more=bool(parts)), parts  # this answer waits its turn
        elif kept:
            shown, rest = Text(join_texts([*kept.texts, first_text or ""])), parts[1:]
        else:
            shown, rest = (parts[0] if parts else None), parts[1:]
        total = len(parts)
        full = record.but(answer=answer, trace=trace, total=total or None)
        if not rest:
            done = self.states.answer(key, raw, record, Answer((shown,) if shown else ()), via, total or None)
        elif cs and len(rest) < total:  # the first part is shown now, the rest follow by customer service
            done = self.late.send(Actor.TRY, key, raw, full, answer, parts, first=1)
        else:
            done = self.pickup.keep(Actor.TRY, key, raw, full, rest, "parts" if len(rest) < total else "behind_older")
        if not done:
            self.pickup.release(kept)
            return None
        self.pickup.shown(kept)
        if not rest:
            self.outcomes.done(trace, via, tries=tries, parts=total, answer=answer)
        return Say(shown)

    def meanwhile(self, key: str, inbound: Inbound, *, with_kept: bool = True) -> Say:
        """The reply of a last try whose own answer is not ready: the user's kept answers (``with_kept``) and,
        when this answer will have to be picked up, the notice that says so (better than nothing)."""
        notice = [] if self.cs.available(probe=True) else [self.config.pickup_notice]
        room = utf8_len(self.config.pickup_notice + SEPARATOR) if notice else 0
        kept = self._claim_kept(inbound, key, room=room) if with_kept else Claimed()
        if kept.reply:  # a kept voice or image: it is the whole reply
            self.pickup.shown(kept)
            return Say(kept.reply)
        texts = [*kept.texts, *notice]
        self.pickup.shown(kept)
        return Say(Text(join_texts(texts))) if texts else SUCCESS

    def partial(self, key: str, raw: str, record: Record, inbound: Inbound) -> Say | None:
        """The try that must answer a streamed answer still being written: the user's kept answers, then the
        sentences written so far (as many as fit); the rest follows by customer service or pickup. None when
        the record moved meanwhile."""
        cs = self.cs.available(probe=True)
        marker = "" if cs else self.config.more_marker
        kept = self._claim_kept(inbound, key, room=self.config.max_text_bytes // 2)
        if kept.reply:  # a kept voice or image cannot share a reply: it waits for the next message
            self.pickup.release(kept)
            kept = Claimed()
        written = record.unseen() or ""
        piece = written.lstrip()
        room = self.config.max_text_bytes - utf8_len(marker) - (
            utf8_len(join_texts(kept.texts) + SEPARATOR) if kept.texts else 0)
        first = split_text(piece, max(room, 64))[0]
        consumed = len(written) - len(piece) + piece.index(first) + len(first)
        if not self.states.show_partial(key, raw, record, (record.seen or "") + written[:consumed]):
            self.pickup.release(kept)
            return None
        self.pickup.shown(kept)
        return Say(Text(join_texts([*kept.texts, first + marker])))

    def _too_long(self, part: Part) -> bool:
        return isinstance(part, Text) and utf8_len(part.content) > self.config.max_text_bytes

    def _claim_kept(self, inbound: Inbound, key: str, room: int = 0) -> Claimed:
        if inbound.key.startswith("e:") or not inbound.message.source:  # events pick nothing up
            return Claimed()
        return self.pickup.claim(inbound.message.source, self.config.max_text_bytes - room, exclude=key)

    def _kept_reply(self, kept: Claimed, *, more: bool) -> Part:
        if kept.reply:
            return kept.reply
        text = join_texts(kept.texts)
        if more and not text.endswith(self.config.more_marker) and utf8_len(
                text + self.config.more_marker) <= self.config.max_text_bytes:
            text += self.config.more_marker
        return Text(text)
