"""What the bot still owes a user for one message, read from the message's delivery record in the bot's store.

``python -m bot simulate`` (and :class:`bot.testing.WeChatRetryClient` given the bot's store) keeps looking
while the bot can still send something for the message — its job still running, or customer-service parts
still to come — and stops at once when nothing more can come. The one function that reads the record is
:func:`owed`: it alone knows the record's key and states (bot/delivery/record.py).
"""
from __future__ import annotations

from typing import NamedTuple

from bot.store import Store, StoreError


class Owing(NamedTuple):
    """``waiting``: why more may still come for the message (None: nothing more can come); ``note``: what the
    user should know at the end (e.g. that the rest waits for their next message)."""

    waiting: str | None
    note: str | None = None


def owed(store: Store, push_xml: str, *, customer_service: int, passive: bool) -> Owing | None:
    """What the bot still owes for the push ``push_xml``, given what the user saw of it so far: ``customer_service``
    messages and whether a try got a passive reply. None when the store has no record of it (another store, or
    it expired): the caller cannot tell and falls back to waiting a fixed time."""
    from bot.delivery.record import DELIVERED, DONE, PENDING, RUNNING, Record, dedupe_key, inbound_from_xml
    try:
        record = Record.load(store.get(f"dl:{dedupe_key(inbound_from_xml(push_xml))}"))
    except (StoreError, ValueError, TypeError):
        return None
    if record is None:
        return None
    if record.state == RUNNING:
        return Owing("the answer is still being prepared")
    if record.state == DONE:
        return Owing("the answer is ready and about to go out")
    if record.state == PENDING:
        return Owing(None, "the rest of the answer is kept for pickup: it comes with this user's next message")
    if record.state == DELIVERED and record.via == "customer_service":
        # ``total`` counts a first part a passive reply showed, unless that reply showed a streamed answer's
        # beginning (``shown``): then every part of what is left goes by customer service.
        expected = (record.total or 1) - (1 if passive and not record.shown else 0)
        if customer_service < expected:
            return Owing(f"customer-service messages still to come ({customer_service} of {expected} seen)")
    return Owing(None)
