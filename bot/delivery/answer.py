"""The passive answer of one try: the user's kept answers first, then this message's, within the byte limit.

A passive reply is the cheapest way out and the only one on most accounts, so every try that answers also
carries what the user is owed: answers kept for pickup (oldest first), then this message's answer — or,
when it does not fit or must wait behind an older split answer, a note that more follows. A long answer's
first part goes now; the rest by customer service, or kept for pickup with ``more_marker``.
"""
from __future__ import annotations

import logging
import threading

from wechatpy import replies

from bot.config import ReplyConfig
from bot.core.envelope import Inbound
from bot.core.pipeline import SUCCESS
from bot.core.speech import PART_SEPARATOR
from bot.core.text import cdata, split_text, utf8_len
from bot.delivery.customer_service import CustomerService
from bot.delivery.late import LateAnswers
from bot.delivery.ledger import Ledger, closed
from bot.delivery.parts import SEPARATOR, as_text_reply, join_texts, text_of
from bot.delivery.pickup import Claimed, Pickup
from bot.delivery.record import DELIVERED, Record

log = logging.getLogger("bot.delivery")


class Answerer:
    def __init__(self, ledger: Ledger, cs: CustomerService, pickup: Pickup, late: LateAnswers,
                 config: ReplyConfig) -> None:
        self.ledger, self.cs, self.pickup, self.late, self.config = ledger, cs, pickup, late, config

    def answer(self, key: str, raw: str, record: Record, inbound: Inbound, *, path: str, tries: int,
               nothing_kept: bool = False) -> str | None:
        """Deliver the finished ``record`` (state done, read as ``raw``) in this try's reply. None when the
        record moved meanwhile (the caller reads it again). ``nothing_kept``: the message's claim, a moment
        ago, saw no answers kept for its user (one look at the store saved)."""
        reply_xml = record.reply or SUCCESS
        trace = record.trace or {}
        kept = Claimed() if nothing_kept else self._claim_kept(inbound, key)
        if not kept and utf8_len(reply_xml) <= self.config.max_text_bytes and PART_SEPARATOR not in reply_xml:
            if not self.ledger.swap(key, raw, record.but(state=DELIVERED, via="passive", trace=None), closed(key)):
                return None
            self.ledger.done(trace, path, tries=tries)
            return reply_xml
        cs = self.cs.available(probe=True)  # a long answer: its first part says "more" only where it must
        parts = self.late.parts(reply_xml, for_pickup=not cs) if reply_xml != SUCCESS else []
        first_text = text_of(parts[0]) if parts else None
        if kept and (kept.more or kept.reply or (parts and (first_text is None or utf8_len(
                join_texts([*kept.texts, first_text])) > self.config.max_text_bytes))):
            shown, rest = self._kept_reply(kept, inbound, more=bool(parts)), parts  # this answer waits its turn
        elif kept:
            shown, rest = as_text_reply(parts[0], join_texts([*kept.texts, first_text or ""])), parts[1:]
        else:
            shown, rest = (parts[0] if parts else SUCCESS), parts[1:]
        total = len(parts)
        if not rest:
            done = self.ledger.swap(key, raw, record.but(state=DELIVERED, via="passive", reply=shown, trace=None,
                                                         total=total or None), closed(key))
        elif cs and len(rest) < total:  # the first part is shown now, the rest follow by customer service
            sending = record.but(state=DELIVERED, via="customer_service", total=total)
            done = self.ledger.swap(key, raw, sending, closed(key))
            if done:  # not in this request: its answer must not wait for WeChat's API
                threading.Thread(target=self.late.send_parts, args=(key, sending, parts), kwargs={"first": 1},
                                 name="wvb-cs-send", daemon=True).start()
        else:
            done = self.pickup.keep(key, raw, record.but(total=total), rest,
                                    "parts" if len(rest) < total else "behind_older")
        if not done:
            self.pickup.release(kept)
            return None
        self.pickup.shown(kept)
        if not rest:
            self.ledger.done(trace, path, tries=tries, parts=total)
        return shown

    def meanwhile(self, key: str, inbound: Inbound) -> str:
        """The reply of a last try whose own answer is not ready: the user's kept answers and, when this
        answer will have to be picked up, the notice that says so (better than nothing)."""
        notice = [] if self.cs.available(probe=True) else [self.config.pickup_notice]
        room = utf8_len(self.config.pickup_notice + SEPARATOR) if notice else 0
        kept = self._claim_kept(inbound, key, room=room)
        if kept.reply:  # a kept voice or image: it is the whole reply
            self.pickup.shown(kept)
            return kept.reply
        texts = [*kept.texts, *notice]
        self.pickup.shown(kept)
        return self.text_reply(inbound, join_texts(texts)) if texts else SUCCESS

    def partial(self, key: str, raw: str, record: Record, inbound: Inbound) -> str | None:
        """The try that must answer a streamed answer still being written: the user's kept answers, then the
        sentences written so far (as many as fit); the rest follows by customer service or pickup. None when
        the record moved meanwhile."""
        cs = self.cs.available(probe=True)
        marker = "" if cs else self.config.more_marker
        kept = self._claim_kept(inbound, key, room=self.config.max_text_bytes // 2)
        if kept.reply:  # a kept voice or image cannot share a reply: it waits for the next message
            self.pickup.release(kept)
            kept = Claimed()
        shown = record.shown or 0
        written = (record.partial or "")[shown:]
        piece = written.lstrip()
        room = self.config.max_text_bytes - utf8_len(marker) - (
            utf8_len(join_texts(kept.texts) + SEPARATOR) if kept.texts else 0)
        first = split_text(piece, max(room, 64))[0]
        consumed = len(written) - len(piece) + piece.index(first) + len(first)
        if not self.ledger.swap(key, raw, record.but(late=True, shown=shown + consumed)):
            self.pickup.release(kept)
            return None
        self.pickup.shown(kept)
        return self.text_reply(inbound, join_texts([*kept.texts, first + marker]))

    def _claim_kept(self, inbound: Inbound, key: str, room: int = 0) -> Claimed:
        if inbound.key.startswith("e:") or not inbound.message.source:  # events pick nothing up
            return Claimed()
        return self.pickup.claim(inbound.message.source, self.config.max_text_bytes - room, exclude=key)

    def _kept_reply(self, kept: Claimed, inbound: Inbound, *, more: bool) -> str:
        if kept.reply:
            return kept.reply
        text = join_texts(kept.texts)
        if more and not text.endswith(self.config.more_marker) and utf8_len(
                text + self.config.more_marker) <= self.config.max_text_bytes:
            text += self.config.more_marker
        return self.text_reply(inbound, text)

    @staticmethod
    def text_reply(inbound: Inbound, content: str) -> str:
        return replies.TextReply(message=inbound.message, content=cdata(content)).render()
