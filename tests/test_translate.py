"""handlers.translate against the WeChat API sandbox: both directions, and a clean fallback when it fails."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bot.core.webhook import Webhook
from bot.sandbox import Sandbox
from bot.testing import BotClient, test_config
from handlers import echo, translate

APPID, SECRET = "wxtranslate000001", "translate-secret"
FAILED_ZH, FAILED_EN = translate.MESSAGES["zh_CN"]["failed"], translate.MESSAGES["en_US"]["failed"]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(appid=APPID, appsecret=SECRET) as sb:
        yield sb


@pytest.fixture
def client(sandbox: Sandbox, wechat_client) -> BotClient:
    sandbox.reset()
    cfg = test_config(wechat={"appid": APPID, "appsecret": SECRET, "api_base_url": sandbox.url})
    return wechat_client(translate.router, echo.router, config=cfg)


def translations(sandbox: Sandbox) -> list[tuple[str, str, int]]:
    return [(c["query"]["lfrom"], c["query"]["lto"], c["errcode"]) for c in sandbox.calls()
            if c["api"] == "translatecontent"]


def test_chinese_to_english(sandbox: Sandbox, client: BotClient) -> None:
    sandbox.register_translation("今天天气很好", "The weather is nice today")
    assert client.text("翻译：今天天气很好").content == "The weather is nice today"
    assert client.voice(recognition="翻译一下今天天气很好").content == "The weather is nice today"
    assert translations(sandbox) == [("zh_CN", "en_US", 0)] * 2


def test_english_to_chinese(sandbox: Sandbox, client: BotClient) -> None:
    sandbox.register_translation("good morning", "早上好")
    assert client.text("Translate good morning").content == "早上好"
    assert translations(sandbox) == [("en_US", "zh_CN", 0)]


def test_the_users_punctuation_is_translated(sandbox: Sandbox, client: BotClient) -> None:
    """Matching uses the normalized text; the API gets what the user wrote after the command word."""
    sandbox.register_translation("你好，世界。", "Hello, world.")
    assert client.text("翻译 你好，世界。").content == "Hello, world."


def test_not_a_translation_request(client: BotClient, sandbox: Sandbox) -> None:
    assert client.text("翻译").content == "翻译"                  # nothing to translate: echo
    assert client.text("translated text").content == "translated text"
    assert translations(sandbox) == []


@pytest.mark.parametrize("fault", [{"errcode": -1}, {"errcode": 0, "http_status": 500, "body": "<html>oops</html>"}])
def test_api_failure_gets_a_clear_message(sandbox: Sandbox, client: BotClient, caplog: pytest.LogCaptureFixture,
                                          fault: dict) -> None:
    sandbox.inject_fault("translatecontent", **fault)
    with caplog.at_level(logging.WARNING, "handlers.translate"):
        assert client.text("翻译 你好", msg_id=3131).content == FAILED_ZH
    assert "translate failed msg_id=3131 zh_CN->en_US" in caplog.text
    sandbox.register_translation("你好", "Hello")
    assert client.text("翻译 你好").content == "Hello"            # the fault was one call: working again


def test_failure_message_follows_the_users_language(sandbox: Sandbox, client: BotClient) -> None:
    sandbox.inject_fault("translatecontent", -1)
    assert client.text("translate good night").content == FAILED_EN


def test_too_long_is_refused_before_calling(sandbox: Sandbox, client: BotClient) -> None:
    assert client.text("翻译" + "很" * 201).content == translate.MESSAGES["zh_CN"]["too_long"]  # 603 bytes
    assert translations(sandbox) == []


def test_without_an_api_client(caplog: pytest.LogCaptureFixture) -> None:
    """A bare Webhook has no services: the handler still answers clearly and logs why."""
    bare = BotClient(Webhook(test_config(), translate.router))
    with caplog.at_level(logging.WARNING, "handlers.translate"):
        assert bare.text("翻译 你好", msg_id=3232).content == FAILED_ZH
    assert "translate failed msg_id=3232" in caplog.text and "no WeChat API client" in caplog.text
