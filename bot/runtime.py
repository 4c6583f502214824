"""Wiring: build the services, the pipeline, the delivery and the webhook that the config asks for.

The only place that knows every layer: adapters (web, cli, testing, the RQ worker) call it, and each part
is handed what it needs through its constructor.
"""
from __future__ import annotations

from typing import Any

from bot.config import Config
from bot.core.intents import check_intents
from bot.core.pipeline import Pipeline
from bot.core.router import Router
from bot.core.services import Services
from bot.core.webhook import Webhook
from bot.delivery.engine import Delivery
from bot.delivery.executors import RQExecutor
from bot.ops.account import serving_accounts
from bot.ops.clock import SYSTEM, Clock
from bot.store import open_store
from bot.store.base import Store
from bot.voice.recognizers import build_chain
from bot.voice.recognizers.base import Transcriber
from bot.wechat import WeChatAPI
from bot.wechat.wecom import WeComAPI

__all__ = ["Services", "bot_id", "build_client", "build_delivery", "check_config", "build_pipeline", "build_services",
           "build_webhook", "build_webhooks", "store_url"]


def check_config(config: Config) -> None:
    """What every entry point runs on a loaded config before it serves, beyond ``bot.config``'s own rules (which
    loading already ran): the ``[[intents]]`` patterns and templates, checked where the intents are built. Commands
    that never build a bot (``check``, ``simulate``) refuse the same configs as those that do."""
    check_intents(config.intents)


def build_services(config: Config) -> Services:
    """The account's store (under its own prefix: ``[storage] prefix`` + ``NAME:`` for ``[accounts.NAME]``) and
    its API client."""
    store = open_store(store_url(config), prefix=config.storage.prefix)
    return Services(store=store, client=build_client(config, store))


def build_client(config: Config, store: Store, **kwargs: Any) -> WeChatAPI | WeComAPI:
    """The API client of the config's account: a WeCom app's (``message/send``…) or an Official Account's."""
    kwargs.setdefault("pool_size", config.reply.threads)
    if config.account.kind == "wecom_app":
        return WeComAPI(config.wechat, store, agent_id=config.account.agent_id, account=config.account.label,
                        **kwargs)
    return WeChatAPI(config.wechat, store, account=config.account.label, **kwargs)


def store_url(config: Config) -> str:
    """Relative SQLite paths are relative to the config file, so every worker finds the same file."""
    url = config.storage.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{(config.base_dir / url[len('sqlite:///'):]).resolve()}"
    return url


def build_delivery(pipeline: Pipeline, services: Services, *, start: bool = True) -> Delivery:
    """Delivery through the store and the executor ``[reply] executor`` names, on the pipeline's clock; its
    heartbeat and sweeper run in this process from now on (``start``), until ``delivery.close()``."""
    config = pipeline.config
    reply = config.reply
    executor = None
    if reply.executor == "rq":  # bot.config refused "rq" without a redis:// url
        executor = RQExecutor(config.storage.url, reply.queue, bot_id(config), ttl_s=reply.state_ttl_s,
                              job_timeout_s=reply.tries * reply.wechat_timeout_s + config.voice.window_s + 60)
    delivery = Delivery(pipeline, services, executor=executor, clock=pipeline.clock)
    if start:
        delivery.start()
    return delivery


def bot_id(config: Config) -> str:
    """Which bot an RQ job is for: a worker can serve several (``appid:storage prefix``)."""
    return f"{config.wechat.appid}:{config.storage.prefix}"


def build_pipeline(config: Config, router: Router | None = None, *, services: Services,
                   transcriber: Transcriber | None = None, clock: Clock = SYSTEM) -> Pipeline:
    """``router`` (default: the configured routers and intents) behind the configured recognizer chain."""
    return Pipeline(config, router, transcriber=transcriber or build_chain(config, services.client),
                    services=services, clock=clock)


def build_webhook(config: Config, router: Router | None = None, *, services: Services | None = None,
                  transcriber: Transcriber | None = None, clock: Clock = SYSTEM) -> Webhook:
    """The whole bot for ``config``, delivered exactly once through the store, on ``clock``."""
    if config.accounts:
        raise ValueError("a config with [accounts] has a webhook per account: use build_webhooks(config)")
    services = services or build_services(config)  # one set: delivery, sessions and handlers share it
    pipeline = build_pipeline(config, router, services=services, transcriber=transcriber, clock=clock)
    return Webhook(config, pipeline=pipeline, delivery=build_delivery(pipeline, services), clock=clock)


def build_webhooks(config: Config, router: Router | None = None, **kwargs: Any) -> list[Webhook]:
    """One webhook per account the config serves (``[accounts.NAME]``, or the one of ``[wechat]``), in order;
    ``router`` (default: each account's configured routers) for all of them."""
    served = config.served()
    serving_accounts([account.account.name for account in served])
    return [build_webhook(account, router, **kwargs) for account in served]
