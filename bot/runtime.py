"""Wiring: build the core webhook and the services the config asks for."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import Config
from .router import Router
from .webhook import Webhook


@dataclass
class Services:
    """The long-lived services one bot process shares between requests."""

    store: Any
    client: Any


def build_services(config: Config) -> Services:
    from .store import open_store
    from .wechat import WeChatAPI
    store = open_store(_resolve_store_url(config), prefix=config.storage.prefix)
    return Services(store=store, client=WeChatAPI(config.wechat, store, pool_size=config.reply.threads))


def _resolve_store_url(config: Config) -> str:
    """Relative SQLite paths are relative to the config file, so every worker finds the same file."""
    url = config.storage.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{(config.base_dir / url[len('sqlite:///'):]).resolve()}"
    return url


def build_webhook(config: Config, router: Router | None = None, *, services: Services | None = None,
                  **kwargs: Any) -> Webhook:
    services = services or build_services(config)  # one set: delivery, sessions and handlers share it
    if "transcriber" not in kwargs:
        from .recognizers import build_chain
        kwargs["transcriber"] = build_chain(config, services.client)
    webhook = Webhook(config, router, **kwargs)
    webhook.services = services
    from .delivery import attach
    attach(webhook, services)
    return webhook
