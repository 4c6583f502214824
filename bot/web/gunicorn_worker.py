"""gunicorn's ``gthread`` worker, telling the app when each request's connection came in.

Under a burst, accepted connections wait in the worker's queue until one of its threads is free; WeChat's 5 s
run from when it sent the request, not from when a thread picks it up. The worker stamps each connection when
it queues it (a new connection, or a keep-alive one with its next request), and the callback reads the stamp
(:func:`queued_at`) so the delivery judges the try by WeChat's clock (bot/core/timing.py). Everything else is
gunicorn's own ``ThreadWorker``; ``bot/web/gunicorn_conf.py`` names this class.
"""
from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker

_QUEUED: ContextVar[float | None] = ContextVar("wvb_queued_at", default=None)


def queued_at() -> float | None:
    """When the current request's connection was queued for a thread (``time.time()``), under this worker."""
    return _QUEUED.get()


class ThreadWorker(_ThreadWorker):  # type: ignore[misc]
    def enqueue_req(self, conn: Any) -> None:
        conn.wvb_queued_at = time.time()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        token = _QUEUED.set(getattr(conn, "wvb_queued_at", None))
        try:
            return super().handle(conn)
        finally:
            _QUEUED.reset(token)
