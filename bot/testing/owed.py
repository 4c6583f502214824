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


def owed(store: Store, push_xml: str, *, customer_service: int = 0, passive: bool = False) -> Owing | None:
    """What the bot still owes for the push ``push_xml``. None when the store has no record of it (another store,
    or it expired): the caller cannot tell and falls back to waiting a fixed time. (``customer_service`` and
    ``passive``, what the user saw so far, are no longer needed: the record says how many parts went.)"""
    from bot.delivery.record import Record, State, dedupe_key, inbound_from_xml
    from bot.delivery.states import States
    try:
        record = Record.load(store.get(States.rkey(dedupe_key(inbound_from_xml(push_xml)))))
    except (StoreError, ValueError, TypeError):
        return None
    if record is None:
        return None
    if record.state is State.RUNNING:
        return Owing("the answer is still being prepared")
    if record.state is State.DONE:
        return Owing("the answer is ready and about to go out")
    if record.state is State.SENDING:  # the record counts what customer service took
        total = len(record.kept.parts) if record.kept else 0
        return Owing(f"customer-service messages still to come ({record.sent or 0} of {total} sent)")
    if record.state is State.PENDING:
        return Owing(None, "the rest of the answer is kept for pickup: it comes with this user's next message")
    return Owing(None)
