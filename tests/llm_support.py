"""Helpers for the handlers.llm tests: a bot whose last router is handlers.llm talking to the sandbox's chat
endpoint with a key that must never show up anywhere, and a capture of every log record of the process."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from delivery_support import WAIT_S, bot_config, start_sandbox

from bot.config import Config
from bot.sandbox import Sandbox
from bot.testing import WeChatRetryClient

KEY = "sk-llm-test-9f3b2c7d41e0a8"  # the service's key: must never show up anywhere
APOLOGIES = {kind: f"[apology {kind}]" for kind in
             ("auth", "not_found", "rate_limited", "server", "timeout", "connection", "other")}
MORE = "（未完，回复任意文字继续）"  # [reply] more_marker's default


def llm_sandbox() -> Sandbox:
    """The sandbox the tests share: it wants :data:`KEY`, streams as fast as it can, timed answers × 0.1."""
    return start_sandbox(0.05, chat_api_key=KEY, chat_chunks_per_s=0.0, chat_time_scale=0.1)


def llm_config(sandbox: Sandbox, *, store: str = "memory://", prefix: str | None = None, session_ttl: float = 1800,
               **llm: Any) -> Config:
    """A bot whose last router is handlers.llm, talking to the sandbox's chat endpoint with :data:`KEY`."""
    return bot_config(sandbox.url, store=store, prefix=prefix, handlers={"routers": ["handlers.lights:router",
                                                                                      "handlers.llm:router"]},
                      voice={"recognizers": ["push"]}, session={"ttl_s": session_ttl},
                      llm={"url": f"{sandbox.url}/v1", "model": "sandbox-chat", "api_key": KEY,
                           "apologies": APOLOGIES, **llm})


@contextmanager
def logs(level: int = logging.INFO) -> Iterator[list[str]]:
    """Every log record of the process (bot, handlers, libraries), formatted, from all threads."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    root, handler, old = logging.getLogger(), Collect(level), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def chat_calls(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [c for c in sandbox.calls() if c["path"] == "/v1/chat/completions"]


def user_client(config: Config, bot: Any, sandbox: Sandbox) -> WeChatRetryClient:
    return WeChatRetryClient(config, bot.url, sandbox.url, wait_s=WAIT_S)


def sandbox_fixtures(start: Callable[[], Sandbox]) -> tuple[Any, Any]:
    """A module's ``sandbox`` (one per module, started by ``start``) and the autouse ``_clean`` that resets its
    settings and records after each test: ``sandbox, _clean = sandbox_fixtures(llm_sandbox)``."""
    @pytest.fixture(scope="module")
    def sandbox() -> Iterator[Sandbox]:
        sb = start()
        yield sb
        sb.stop()

    @pytest.fixture(autouse=True)
    def _clean(sandbox: Sandbox) -> Iterator[None]:
        yield
        sandbox.reset(settings=True)
    return sandbox, _clean
