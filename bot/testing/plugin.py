"""pytest plugin (entry point ``pytest11``): fixtures for testing handlers without a WeChat account."""
from __future__ import annotations

from collections.abc import Callable
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
def wechat_client(wechat_config: Config) -> Callable[..., BotClient]:
    """``wechat_client(router, ...)`` → a :class:`BotClient` talking to an in-process bot with those routers."""
    from bot.runtime import build_webhook

    def make(*routers: Router, mode: Mode | None = None, config: Config | None = None, account: str | None = None,
             **kw: Any) -> BotClient:
        cfg = account_config(config or wechat_config, account)  # account=NAME: one of [accounts.NAME]
        router = combine(routers) if routers else None
        return BotClient(build_webhook(cfg, router, **kw), mode=mode)

    return make
