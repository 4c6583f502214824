"""Wiring: build the services, the pipeline, the delivery and the webhook that the config asks for.

The only place that knows every layer: adapters (web, cli, testing, the RQ worker) call it, and each part
is handed what it needs through its constructor.
"""
from __future__ import annotations

from typing import Any

from bot.config import Config, ConfigError
from bot.core.intents import check_intents
from bot.core.pipeline import Pipeline
from bot.core.router import Router
from bot.core.services import Services
from bot.core.webhook import Webhook
from bot.delivery.engine import Delivery
from bot.delivery.executors import RQExecutor
from bot.ops.account import serving_accounts
from bot.ops.clock import SYSTEM, Clock
from bot.store import check_url, open_store
from bot.store.base import Store
from bot.voice.recognizers import build_chain
from bot.voice.recognizers.base import Transcriber
from bot.voice.recognizers.chain import build_recognizer
from bot.voice.synthesizers.chain import build_synthesizer_chain
from bot.wechat import WeChatAPI
from bot.wechat.wecom import WeComAPI

__all__ = ["Services", "bot_id", "build_client", "build_delivery", "check_config", "build_pipeline", "build_services",
           "build_webhook", "build_webhooks", "customer_service_memory", "store_url"]


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
    for account in config.served() if build else ():
        for name in account.voice.recognizers:
            build_recognizer(name, account, None)
        if account.voice.reply.when != "never":  # else only a handler's ctx.reply_speech uses it: text on failure
            build_synthesizer_chain(account, strict=True)


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
                              job_timeout_s=reply.tries * reply.wechat_timeout_s + config.voice.window_s + 60,
                              budget_s=reply.budget_s, clock=pipeline.clock)
    delivery = Delivery(pipeline, services, executor=executor, clock=pipeline.clock)
    if start:
        delivery.start()
    return delivery


def customer_service_memory(config: Config, services: Services | None = None) -> str | None:
    """The start-up line about the customer-service API: what is remembered for this account and since when,
    asked again now (a later success forgets a refusal). None when nothing is remembered, or nothing is learned
    (``[reply] customer_service`` true or false, passive mode). ``services``: the bot's own (else opened and
    closed here, e.g. in gunicorn's master before it forks)."""
    from bot.delivery.customer_service import CustomerService
    if config.account.kind != "official_account":  # a WeCom app sends with message/send: nothing to learn
        return None
    own = services is None
    services = services or build_services(config)
    try:
        line = CustomerService(services.store, services.client, config.reply, config.wechat.appid, SYSTEM).recheck()
    finally:
        if own:
            services.store.close()
    who = f" ({config.account.name})" if config.account.name else ""
    return f"customer-service API{who}: {line}" if line else None


def bot_id(config: Config) -> str:
    """Which bot an RQ job is for: a worker can serve several (``appid:storage prefix``)."""
    return f"{config.wechat.appid}:{config.storage.prefix}"


def build_pipeline(config: Config, router: Router | None = None, *, services: Services,
                   transcriber: Transcriber | None = None, clock: Clock = SYSTEM) -> Pipeline:
    """``router`` (default: the configured routers and intents) behind the configured recognizer chain."""
    return Pipeline(config, router, transcriber=transcriber or build_chain(config, services.client, clock),
                    services=services, clock=clock)


def build_webhook(config: Config, router: Router | None = None, *, services: Services | None = None,
                  transcriber: Transcriber | None = None, clock: Clock = SYSTEM) -> Webhook:
    """The whole bot for ``config``, delivered exactly once through the store, on ``clock``."""
    if config.accounts:
        raise ValueError("a config with [accounts] has a webhook per account: use build_webhooks(config)")
    check_config(config)  # a Config built in code or mounted (create_app, VoiceBot) is refused like a file's
    services = services or build_services(config)  # one set: delivery, sessions and handlers share it
    pipeline = build_pipeline(config, router, services=services, transcriber=transcriber, clock=clock)
    return Webhook(config, pipeline=pipeline, delivery=build_delivery(pipeline, services), clock=clock)


def build_webhooks(config: Config, router: Router | None = None, **kwargs: Any) -> list[Webhook]:
    """One webhook per account the config serves (``[accounts.NAME]``, or the one of ``[wechat]``), in order;
    ``router`` (default: each account's configured routers) for all of them."""
    served = config.served()
    serving_accounts([account.account.name for account in served])
    return [build_webhook(account, router, **kwargs) for account in served]
