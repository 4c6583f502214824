"""The per-user rate limit: ``[llm] per_user_per_minute`` questions a minute, counted in the store.

A counter per user and calendar minute (``llm:rate:<openid>:<minute>``, one atomic ``incr`` that also sets a
two-minute expiry), so every worker process and machine sharing the store counts together. It is a fixed
window: a user may ask the limit at the end of one minute and again at the start of the next. A store that
fails lets the question through (a log line says so): the limit protects the key's budget, it must not take
the bot down with the store.
"""
from __future__ import annotations

import logging
import time

from bot import Context
from bot.store import Store, StoreError
from bot.store.memory import MemoryStore

log = logging.getLogger("handlers.llm")

KEY = "llm:rate:{openid}:{minute}"
WINDOW_S = 60
TTL_S = 2 * WINDOW_S  # the counter outlives its minute a little: clocks of several machines differ

_local = MemoryStore()  # a bot built without services (no store): the limit holds in this process only


def store_of(ctx: Context) -> Store:
    services = ctx.services
    return services.store if services is not None else _local


def over_limit(ctx: Context, per_minute: int, now: float | None = None) -> bool:
    """Count this question; True when the user asked more than ``per_minute`` this minute (0: no limit)."""
    if per_minute <= 0 or not ctx.openid:
        return False
    minute = int((time.time() if now is None else now) // WINDOW_S)
    try:
        count = store_of(ctx).incr(KEY.format(openid=ctx.openid, minute=minute), 1, ttl=TTL_S)
    except StoreError as exc:
        log.warning("llm rate limit not counted msg_id=%s: %s; answering anyway", ctx.msg_id, exc)
        return False
    if count > per_minute:
        log.info("llm rate limited msg_id=%s count=%d limit=%d per minute", ctx.msg_id, count, per_minute)
        return True
    return False
