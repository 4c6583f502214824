"""The smaller traps of a new user's first hour (issue 12, item 6), each as the user meets it."""
from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, run_cli, write_config_file
from flask import Flask

from bot import Router, VoiceBot
from bot.core.webhook import Webhook
from bot.sandbox import Sandbox
from bot.testing import BotClient, test_config


def test_a_handler_returning_an_int_is_named_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    router = Router("home")

    @router.keyword("价格")
    def price(ctx: object) -> int:
        return 42
    caplog.set_level(logging.INFO)
    webhook = Webhook(test_config(encrypted=False), router)
    assert BotClient(webhook).text("价格", msg_id=4242).content == webhook.config.handlers.apology
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == ("handler failed msg_id=4242: keyword ('价格',) price in router 'home' returned int "
                                   "42; expected str, a wechatpy reply or None")
    assert record.exc_info is None  # nothing raised: no traceback to read through


def test_check_does_not_create_the_sqlite_file_it_tests(tmp_path: Path) -> None:
    config = write_config_file(tmp_path, storage={"url": "sqlite:///deep/new/state.db"})
    result = run_cli("check", "--config", str(config), env={"PYTHONIOENCODING": "utf-8"})
    store = next(line for line in result.stdout.splitlines() if "store (" in line)
    assert store.startswith("✓") and "does not exist yet; the bot creates it at start-up" in store, result.stdout
    assert not (tmp_path / "deep").exists()


def test_check_says_when_the_sqlite_file_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    config = write_config_file(tmp_path, storage={"url": "sqlite:///a-file/state.db"})
    result = run_cli("check", "--config", str(config), env={"PYTHONIOENCODING": "utf-8"})
    store = next(line for line in result.stdout.splitlines() if "store (" in line)
    assert store.startswith("✗") and "cannot be created" in store and result.returncode == 1


def test_a_mounted_voicebot_has_healthz(write_config) -> None:
    app = Flask("host")
    VoiceBot(app, write_config())
    assert app.test_client().get("/healthz").get_json() == {"status": "ok"}
    own = Flask("host-with-its-own")
    own.add_url_rule("/healthz", "mine", lambda: "mine")
    VoiceBot(own, write_config())
    assert own.test_client().get("/healthz").get_data(as_text=True) == "mine"


def test_config_toml_is_ignored_by_git() -> None:
    result = subprocess.run(["git", "check-ignore", "-q", "config.toml"], cwd=str(REPO), timeout=30)
    assert result.returncode == 0


def test_the_help_texts_say_what_each_option_is() -> None:
    sandbox = run_cli("sandbox", "--help").stdout
    for option, words in (("--host", "listen address"), ("--port", "listen port"), ("--appid", "AppID"),
                          ("--secret", "AppSecret")):
        line = next(line for line in sandbox.splitlines() if line.strip().startswith(option))
        assert words in line, line
    assert "[en_US] text" in " ".join(sandbox.split())  # says what translatecontent does not translate
    simulate = " ".join(run_cli("simulate", "--help").stdout.split())
    assert "--openid OPENID the user's openid (FromUserName)" in simulate
    assert "--insecure" in simulate and "--once" in simulate


def test_the_sandbox_translates_the_readmes_phrases() -> None:
    sandbox = Sandbox()
    assert sandbox.translate("今天天气很好", "zh_CN", "en_US") == "The weather is nice today"
    assert sandbox.translate("Good morning", "en_US", "zh_CN") == "早上好"
    assert sandbox.translate("随便一句", "zh_CN", "en_US") == "[en_US] 随便一句"  # says it is a stand-in
    sandbox.register_translation("今天天气很好", "Lovely day")
    assert sandbox.translate("今天天气很好", "zh_CN", "en_US") == "Lovely day"
