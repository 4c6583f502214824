"""Late answers: what happens to an answer that no try of its message can carry any more.

Through the customer-service API where the account has it (every part in order), else — or when WeChat
refuses it for this message — kept for pickup with the user's next message. Whoever wins the one
compare-and-set from ``done`` (the job that finished late, the last try, or the sweeper) sends it: at most
once by customer service, exactly once by pickup.
"""
from __future__ import annotations

import logging
import threading

from bot.config import ReplyConfig
from bot.delivery.customer_service import CustomerService, Sent
from bot.delivery.ledger import Ledger, closed
from bot.delivery.parts import as_text_reply, split_reply, text_of
from bot.delivery.pickup import Pickup
from bot.delivery.record import DELIVERED, Record
from bot.ops.metrics import SPLITS

log = logging.getLogger("bot.delivery")


class LateAnswers:
    def __init__(self, ledger: Ledger, cs: CustomerService, pickup: Pickup, config: ReplyConfig) -> None:
        self.ledger, self.cs, self.pickup, self.config = ledger, cs, pickup, config

    def parts(self, reply_xml: str, *, for_pickup: bool) -> list[str]:
        """The answer in parts WeChat accepts; parts meant for pickup end with ``more_marker``."""
        parts = split_reply(reply_xml, self.config.max_text_bytes, self.config.more_marker if for_pickup else None)
        if len(parts) > 1:
            SPLITS.inc()
        return parts

    def dispatch(self, key: str, raw: str, record: Record, *, background: bool = False) -> bool:
        """Send or keep the finished answer ``record`` (its reply and trace set), replacing ``raw``. False
        when the record moved meanwhile (the caller reads it again)."""
        reply = record.reply or ""
        if self.cs.available(probe=True):
            parts = self.parts(reply, for_pickup=False)
            sending = record.but(state=DELIVERED, via="customer_service", total=len(parts), push=None, owner=None)
            if not self.ledger.swap(key, raw, sending, closed(key)):
                return False
            if background:  # a request thread decided: do not make its answer wait for WeChat's API
                threading.Thread(target=self.send_parts, args=(key, sending, parts), name="wvb-cs-send",
                                 daemon=True).start()
            else:
                self.send_parts(key, sending, parts)
            return True
        return self.pickup.keep(key, raw, record, self.parts(reply, for_pickup=True), "no_customer_service")

    def send_parts(self, key: str, record: Record, parts: list[str], first: int = 0) -> None:
        """Send ``parts[first:]`` by customer service in order; what WeChat refuses is kept for pickup."""
        trace = record.trace or {"msg_id": key}
        msg_id, total = str(trace.get("msg_id", key)), record.total or len(parts)
        for i in range(first, len(parts)):
            outcome = self.cs.send(msg_id, record.openid or "", parts[i])
            if outcome is Sent.NOTHING:
                self.ledger.done(trace, "customer_service", sent=False, reason="the late answer was empty")
                return
            if outcome is Sent.REFUSED:
                self._keep_rest(key, record, parts[i:], "refused")
                return
        self.ledger.done(trace, "customer_service", sent=True, parts=total)

    def _keep_rest(self, key: str, record: Record, rest: list[str], why: str) -> None:
        """Parts WeChat refused go to pickup, re-cut so each ends with the marker (the record is ours: it was
        marked delivered before sending, and only its sender moves it back)."""
        texts = [text_of(p) for p in rest]
        if all(t is not None for t in texts) and len(rest) > 0:
            rest = self.parts(as_text_reply(rest[0], "\n".join(t or "" for t in texts)), for_pickup=True)
        raw = self.ledger.store.get(self.ledger.rkey(key))
        if raw is None or not self.pickup.keep(key, raw, record.but(total=record.total), rest, why):
            log.error("delivery %s: refused parts could not be kept for pickup", key)
