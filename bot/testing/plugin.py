"""pytest plugin (entry point ``pytest11``): fixtures for testing handlers without a WeChat account."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.config import Config
from bot.core.router import Router, combine
from bot.testing.client import BotClient, Mode, account_config
from bot.testing.config import test_config


@pytest.fixture
def wechat_config() -> Config:
    """Override this fixture to test against your own config."""
    return test_config()


@pytest.fixture
def wechat_client(wechat_config: Config) -> Iterator[Callable[..., BotClient]]:
    """``wechat_client(router, ...)`` → a :class:`BotClient` talking to an in-process bot with those routers
    (each bot's background threads stop when the test ends)."""
    from bot.runtime import build_webhook
    built: list[Any] = []

    def make(*routers: Router, mode: Mode | None = None, config: Config | None = None, account: str | None = None,
             **kw: Any) -> BotClient:
        cfg = account_config(config or wechat_config, account)  # account=NAME: one of [accounts.NAME]
        router = combine(routers) if routers else None
        webhook = build_webhook(cfg, router, **kw)
        built.append(webhook)
        return BotClient(webhook, mode=mode)

    yield make
    for webhook in built:
        if webhook.delivery is not None:
            webhook.delivery.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Whatever bots a test session built and did not close: their heartbeats and sweepers stop here."""
    from bot.delivery.background import stop_all
    stop_all()
