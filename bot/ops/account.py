"""Which account the current work is for, so that log lines and metrics name it without being handed it.

The webhook sets it for each request (``serving(name)``), the wiring for each account's jobs; log records get
it as ``record.account`` (bot/ops/logs.py) and account-labelled metrics as their ``account`` label
(bot/ops/metrics.py). Empty for the unnamed account of a ``[wechat]`` config: its log lines stay as they were.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

ACCOUNT: ContextVar[str] = ContextVar("wvb_account", default="")
_unnamed = ["default"]  # the metrics label of work no account claimed (see serving_accounts)


@contextmanager
def serving(name: str) -> Iterator[None]:
    """Work done inside is for account ``name`` (``""``: the unnamed account)."""
    token = ACCOUNT.set(name)
    try:
        yield
    finally:
        ACCOUNT.reset(token)


def current() -> str:
    """The account of the current work, ``""`` when unnamed or unknown (a background thread)."""
    return ACCOUNT.get()


def metrics_label(account: str | None = None) -> str:
    """The ``account`` label: ``account``, else the current one, else the process's only account."""
    return account or ACCOUNT.get() or _unnamed[0]


def serving_accounts(names: list[str]) -> None:
    """This process serves these accounts: work no account claimed counts for the only one, or for none
    (``""``) when there are several."""
    _unnamed[0] = (names[0] or "default") if len(names) == 1 else ""
