"""Wiring: build the services, the pipeline, the delivery and the webhook that the config asks for.

The only place that knows every layer: adapters (web, cli, testing, the RQ worker) call it, and each part
is handed what it needs through its constructor.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from bot.config import Config, ConfigError
from bot.core.intents import check_intents
from bot.core.pipeline import Pipeline
from bot.core.router import Router
from bot.core.services import Services
from bot.core.webhook import Webhook
from bot.delivery.engine import Delivery
from bot.delivery.executors import RQExecutor
from bot.store import check_url, open_store
from bot.voice.recognizers import build_chain
from bot.voice.recognizers.base import Transcriber
from bot.voice.recognizers.chain import build_recognizer
from bot.voice.synthesizers.chain import build_synthesizer_chain
from bot.wechat import WeChatAPI

__all__ = ["Services", "bot_id", "build_delivery", "check_config", "build_pipeline", "build_services", "build_webhook",
           "customer_service_memory", "store_url"]


def check_config(config: Config, *, build: bool = True) -> None:
    """What every entry point runs on a loaded config before it serves, beyond ``bot.config``'s own rules (which
    loading already ran): the ``[[intents]]`` patterns and templates, checked where the intents are built, and a
    ``[storage] url`` the stores can open. ``build``: also build the recognizers and synthesizers the way a bot
    does, so that ``check`` refuses every config ``serve``, gunicorn and the worker refuse, with the same line
    (``simulate``, which plays WeChat and builds no bot, passes False)."""
    check_intents(config.intents)
    try:
        check_url(config.storage.url)
    except ValueError as exc:
        raise ConfigError(f"[storage] url: {exc}") from None
    if build:
        for name in config.voice.recognizers:
            build_recognizer(name, config, None)
        if config.voice.reply.when != "never":  # else only a handler's ctx.reply_speech uses it: text on failure
            build_synthesizer_chain(config, strict=True)


def build_services(config: Config) -> Services:
    store = open_store(store_url(config), prefix=config.storage.prefix)
    return Services(store=store, client=WeChatAPI(config.wechat, store, pool_size=config.reply.threads))


def store_url(config: Config) -> str:
    """Relative SQLite paths are relative to the config file, so every worker finds the same file."""
    url = config.storage.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{(config.base_dir / url[len('sqlite:///'):]).resolve()}"
    return url


def build_delivery(pipeline: Pipeline, services: Services) -> Delivery:
    """Delivery through the store and the executor ``[reply] executor`` names."""
    config = pipeline.config
    reply = config.reply
    if reply.executor != "rq":  # bot.config refused "rq" without a redis:// url
        return Delivery(pipeline, services)
    executor = RQExecutor(config.storage.url, reply.queue, bot_id(config), ttl_s=reply.state_ttl_s,
                          job_timeout_s=reply.tries * reply.wechat_timeout_s + config.voice.window_s + 60,
                          budget_s=reply.budget_s)
    return Delivery(pipeline, services, executor=executor)


def customer_service_memory(config: Config, services: Services | None = None) -> str | None:
    """The start-up line about the customer-service API: what is remembered for this account and since when,
    asked again now (a later success forgets a refusal). None when nothing is remembered, or nothing is learned
    (``[reply] customer_service`` true or false, passive mode). ``services``: the bot's own (else opened and
    closed here, e.g. in gunicorn's master before it forks)."""
    from bot.delivery.customer_service import CustomerService
    own = services is None
    services = services or build_services(config)
    try:
        line = CustomerService(services.store, services.client, config.reply, config.wechat.appid).recheck()
    finally:
        if own:
            services.store.close()
    return f"customer-service API: {line}" if line else None


def bot_id(config: Config) -> str:
    """Which bot an RQ job is for: a worker can serve several (``appid:storage prefix``)."""
    return f"{config.wechat.appid}:{config.storage.prefix}"


def build_pipeline(config: Config, router: Router | None = None, *, services: Services,
                   transcriber: Transcriber | None = None) -> Pipeline:
    """``router`` (default: the configured routers and intents) behind the configured recognizer chain."""
    return Pipeline(config, router, transcriber=transcriber or build_chain(config, services.client),
                    services=services)


def build_webhook(config: Config, router: Router | None = None, *, services: Services | None = None,
                  transcriber: Transcriber | None = None, clock: Callable[[], float] = time.time) -> Webhook:
    """The whole bot for ``config``, delivered exactly once through the store."""
    check_config(config)  # a Config built in code or mounted (create_app, VoiceBot) is refused like a file's
    services = services or build_services(config)  # one set: delivery, sessions and handlers share it
    pipeline = build_pipeline(config, router, services=services, transcriber=transcriber)
    return Webhook(config, pipeline=pipeline, delivery=build_delivery(pipeline, services), clock=clock)
