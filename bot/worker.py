"""The RQ worker side of delivery: ``python -m bot worker`` builds the bots it serves and runs their jobs.

Wiring, not delivery: a job names its bot (``appid:storage prefix``), and answering it needs the whole bot
the config describes (recognizers, routers, store), which only ``bot.runtime`` builds.
"""
from __future__ import annotations

import logging
import os

from bot.config import Config, ConfigError
from bot.delivery.engine import Delivery
from bot.delivery.executors import Job
from bot.runtime import bot_id, build_delivery, build_pipeline, build_services

log = logging.getLogger("bot.executor")

_worker_bots: dict[str, Delivery] = {}


def run_job(bot: str, key: str, push_xml: str, owner: str) -> None:
    """An RQ job (``bot.delivery.executors.RUN_JOB``): answer one message for the bot ``bot``."""
    delivery = _worker_bots.get(bot)
    if delivery is None:
        raise LookupError(f"this worker serves no bot {bot!r} (serves: {', '.join(_worker_bots) or 'none'}); "
                          "start it with --config for that bot")
    delivery.run(Job(key, push_xml, owner))


def run_worker(configs: list[Config], *, burst: bool = False, name: str | None = None) -> int:
    """``python -m bot worker``: an RQ worker for the bots in ``configs`` (all on one queue and Redis).

    The bots are built before the worker forks its per-job work horses, so each job starts warm; a work horse
    killed mid-job loses nothing: its lease expires and the next try of the message enqueues the job again.
    """
    from redis import Redis
    from rq import Queue, Worker

    import bot.voice.audio  # noqa: F401 - PyAV, loaded once here instead of in every work horse
    first = configs[0]
    url, queue = first.storage.url, first.reply.queue
    for config in configs:
        if config.reply.executor != "rq" or not config.storage.url.startswith(("redis://", "rediss://")):
            raise ConfigError("[reply] executor: the worker needs executor = \"rq\" and a redis:// [storage] url")
        if (config.storage.url, config.reply.queue) != (url, queue):
            raise ConfigError("[reply] queue: every --config of one worker must use the same Redis and queue")
        for account in config.served():  # each [accounts.NAME] is a bot of its own (its own store prefix)
            services = build_services(account)
            delivery = _worker_bots[bot_id(account)] = build_delivery(build_pipeline(account, services=services),
                                                                      services)
            delivery.sweeper.ensure_running()  # answers no request will carry, and jobs whose owner died
    connection = Redis.from_url(url)
    worker = Worker([Queue(queue, connection=connection)], connection=connection, name=name)
    log.info("RQ worker %s on queue %r (%d bot(s)), pid %d", worker.name, queue, len(configs), os.getpid())
    worker.work(burst=burst, logging_level=first.logging.level.upper(), with_scheduler=False)
    return 0
