"""Several accounts in one deployment: the config's [accounts.NAME] tables (one-line errors), an Official Account
and a WeCom app answering in the same gunicorn workers, each with its own state, log lines and metrics, and
every account's secrets kept out of the logs."""
from __future__ import annotations

import io
import logging
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import AES_KEY, REPO, free_port, run_cli, to_toml
from delivery_support import start_gunicorn_conf
from run_support import bot_run

from bot.config import ConfigError, config_from_dict, load_config
from bot.ops.logs import setup_logging
from bot.sandbox import Sandbox
from bot.testing import BotClient, WeChatRetryClient

SHOP = {"kind": "official_account", "appid": "wxshop0000000001", "appsecret": "shop-app-secret-1", "token": "shoptoken1",
        "encoding_aes_key": AES_KEY, "path": "/wechat"}
STAFF = {"kind": "wecom_app", "corp_id": "wwstaffcorp00001", "agent_id": 1000002, "secret": "staff-app-secret-2",
         "token": "stafftoken2", "encoding_aes_key": "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut", "path": "/wecom"}
SECRETS = [SHOP["appsecret"], SHOP["token"], SHOP["encoding_aes_key"], STAFF["secret"], STAFF["token"],
           STAFF["encoding_aes_key"]]


def two_accounts(api: str = "http://127.0.0.1:9", **sections: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"storage": {"url": "memory://"},
                           "handlers": {"routers": ["handlers.lights:router", "handlers.echo:router"]},
                           "accounts": {"shop": {**SHOP, "api_base_url": api},
                                        "staff": {**STAFF, "api_base_url": f"{api}/wecom"}}}
    raw.update(sections)
    return raw


# -- the config ------------------------------------------------------------------------------------------
def test_each_account_is_a_whole_config_of_its_own() -> None:
    config = config_from_dict(two_accounts(reply={"budget_s": 4.0}, accounts={
        "shop": SHOP, "staff": {**STAFF, "reply": {"max_text_bytes": 1000}, "handlers": {"routers": []}}}))
    shop, staff = config.served()
    assert (shop.account.name, shop.account.kind, shop.server.path, shop.storage.prefix) == \
        ("shop", "official_account", "/wechat", "wvb:shop:")
    assert (staff.account.kind, staff.account.agent_id, staff.wechat.appid, staff.storage.prefix) == \
        ("wecom_app", 1000002, STAFF["corp_id"], "wvb:staff:")
    assert (shop.reply.budget_s, staff.reply.budget_s, shop.reply.max_text_bytes, staff.reply.max_text_bytes) == \
        (4.0, 4.0, 2048, 1000)
    assert shop.handlers.routers == ["handlers.lights:router", "handlers.echo:router"] and staff.handlers.routers == []
    single = config_from_dict({"wechat": {"appid": "a", "appsecret": "s", "token": "t"}})
    assert single.served() == (single,) and single.account.name == "" and single.storage.prefix == "wvb:"


@pytest.mark.parametrize(("accounts", "error"), [
    ({"shop": {**SHOP, "kind": "oa"}}, "[accounts.shop] kind: expected 'official_account' or 'wecom_app', got 'oa'"),
    ({"shop": {**SHOP, "token": 3}}, "[accounts.shop] token: expected a string, got 3"),
    ({"shop": {k: v for k, v in SHOP.items() if k != "appsecret"}}, "[accounts.shop] appsecret: missing; expected a string"),
    ({"shop": {**SHOP, "corp_id": "x"}}, "[accounts.shop] corp_id: unknown key (expected one of: appid, appsecret, "
                                          "token, encoding_aes_key, api_base_url, token_endpoint, http_timeout_s)"),
    ({"staff": {**STAFF, "encoding_aes_key": ""}}, "[accounts.staff] encoding_aes_key: required for a WeCom app"),
    ({"staff": {**STAFF, "encoding_aes_key": "short"}}, "[accounts.staff] encoding_aes_key: expected 43 characters"),
    ({"staff": {**STAFF, "agent_id": 0}}, "[accounts.staff] agent_id: expected the app's AgentId"),
    ({"shop": SHOP, "staff": {**STAFF, "path": "/wechat"}}, "[accounts.staff] path: '/wechat' is already [accounts.shop] path"),
    ({"shop": {**SHOP, "path": "wechat"}}, "[accounts.shop] path: expected a path starting with '/'"),
    ({"shop": {**SHOP, "reply": {"budget_s": 9}}}, "[accounts.shop.reply] budget_s: expected more than 0 and less than"),
    ({"shop": {**SHOP, "reply": {"budget": 1}}}, "[accounts.shop.reply] budget: unknown key"),
    ({"sh op": SHOP}, "[accounts.sh op]: expected a name of 1-32 letters"),
])
def test_an_account_mistake_is_one_line_naming_the_key(accounts: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config_from_dict({"accounts": accounts})
    assert str(raised.value).startswith(error) and "\n" not in str(raised.value)


def test_wechat_and_accounts_together_or_an_array_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^\[wechat\]: a config with \[accounts.NAME\] tables names every account"):
        config_from_dict({"wechat": {"appid": "a", "appsecret": "s", "token": "t"}, "accounts": {"shop": SHOP}})
    with pytest.raises(ConfigError, match=r"^\[accounts\]: expected tables named by account"):
        config_from_dict({"accounts": [SHOP]})


def test_handlers_see_which_account_and_channel_in_process() -> None:
    from bot import Router
    from bot.runtime import build_webhooks
    router = Router("who")
    router.text(lambda ctx: f"{ctx.account}/{ctx.channel}: {ctx.text}")
    shop, staff = build_webhooks(config_from_dict(two_accounts()), router)
    assert BotClient(shop).text("hi").content == "shop/official_account: hi"
    assert BotClient(staff).text("hi").content == "staff/wecom_app: hi"


# -- logs ------------------------------------------------------------------------------------------------
def test_a_second_bots_log_handler_keeps_the_first_ones_secrets_hidden() -> None:
    first = config_from_dict({"wechat": {"appid": "wxfirst", "appsecret": "first-secret-123", "token": "firsttoken"}})
    second = config_from_dict({"wechat": {"appid": "wxsecond", "appsecret": "second-secret-456", "token": "t2t2"}})
    stream = io.StringIO()
    setup_logging(first, stream=stream)  # (conftest removes the root handler after the test)
    setup_logging(second, stream=stream)
    logging.getLogger("bot.test").warning("first-secret-123 second-secret-456 firsttoken")
    assert "first-secret-123" not in stream.getvalue() and "second-secret-456" not in stream.getvalue()
    assert stream.getvalue().count("***") == 3


def test_every_accounts_secrets_are_redacted_and_lines_name_the_account() -> None:
    from bot.ops.account import serving
    stream = io.StringIO()
    setup_logging(config_from_dict(two_accounts()), stream=stream)
    with serving("staff"):
        logging.getLogger("bot.test").warning("leak %s", " ".join(SECRETS))
    line = stream.getvalue()
    assert "account=staff leak" in line and not any(secret in line for secret in SECRETS)


# -- one gunicorn deployment -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("accounts")
    with Sandbox(appid=SHOP["appid"], appsecret=SHOP["appsecret"], wecom_corp_id=STAFF["corp_id"],
                 wecom_secret=STAFF["secret"], wecom_agent_id=STAFF["agent_id"]) as sandbox:
        raw = two_accounts(sandbox.url, storage={"url": "sqlite:///state.db"}, metrics={"enabled": True},
                           voice={"recognizers": ["push", "wechat", "openai"], "openai": {"url": sandbox.url}})
        path = directory / "config.toml"
        path.write_text(to_toml(raw), encoding="utf-8")
        (directory / "prom").mkdir()
        with pytest.MonkeyPatch.context() as env:  # every worker's counters in one scrape
            env.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory / "prom"))
            server = start_gunicorn_conf(path, directory, workers=2, threads=8)
        try:
            yield {"server": server, "sandbox": sandbox, "config": load_config(path), "dir": directory}
        finally:
            server.stop()


def test_an_official_account_and_a_wecom_app_answer_in_the_same_workers(deployment: dict[str, Any]) -> None:
    server, sandbox, config = deployment["server"], deployment["sandbox"], deployment["config"]
    for name, path in (("shop", "/wechat"), ("staff", "/wecom")):
        client = BotClient(config, url=server.base + path, account=name)
        assert client.handshake("1616140317555161061") == (200, "1616140317555161061")
        assert client.text("打开客厅的灯").content == "已打开客厅的灯", name
        clip = sandbox.register_voice("关闭卧室的灯")
        assert client.voice(clip["media_id"]).content == "已关闭卧室的灯", name
    wrong = BotClient(config, url=server.base + "/wecom", account="shop")  # the shop's secrets at the app's path
    assert wrong.text("hi").status in (400, 403)
    seen = WeChatRetryClient(config.accounts[1], server.base + "/wecom", sandbox.url, wait_s=5.0).text("打开灯")
    assert seen.answers and seen.statuses == ["reply"]


def test_each_account_keeps_its_own_state_and_log_lines(deployment: dict[str, Any]) -> None:
    server, directory = deployment["server"], deployment["dir"]
    keys = [row[0] for row in sqlite3.connect(directory / "state.db").execute("SELECT key FROM wvb_kv")]
    assert any(k.startswith("wvb:shop:dl:") for k in keys) and any(k.startswith("wvb:staff:dl:") for k in keys)
    assert any(k.startswith("wvb:staff:access_token:wecom:") for k in keys)
    assert not any(k.startswith("wvb:dl:") for k in keys)
    lines = server.wait_for_log("bot.message", 6)
    assert {line.split("account=")[1].split()[0] for line in lines if "account=" in line} == {"shop", "staff"}
    log = server.log()
    assert not any(secret in log for secret in SECRETS)


def test_metrics_carry_the_account_label(deployment: dict[str, Any]) -> None:
    text = requests.get(deployment["server"].base + "/metrics", timeout=5).text
    for name in ("shop", "staff"):
        assert f'wvb_requests_total{{account="{name}",outcome="accepted",reason=""}}' in text
    assert 'wvb_token_fetches_total{account="staff",endpoint="gettoken",result="ok"}' in text


def test_check_checks_each_account(deployment: dict[str, Any], tmp_path: Path) -> None:
    from bot.cli.check import report
    out = io.StringIO()
    config = deployment["config"].replace(accounts=tuple(a.replace(voice={"recognizers": []}) if a.account.name ==
                                                         "staff" else a for a in deployment["config"].accounts))
    assert report(config, out) == 1
    text = out.getvalue()
    assert "[ok] [shop] WeChat API" in text and "[ok] [staff] WeCom API" in text
    assert "[staff] late answers: by message/send" in text and "[shop] customer-service API" in text
    assert "[FAIL] [staff] voice recognition (WeCom app): a WeCom app has no WeChat recognition" in text


def test_run_with_the_two_account_example_prints_a_simulate_line_per_account_that_works(tmp_path: Path) -> None:
    """README "Several accounts" as a new user tries it: ``run --config accounts.example.toml`` (ports moved), then
    each ``simulate`` command it prints — text and voice to each account — answered by that account."""
    path = tmp_path / "accounts.example.toml"
    path.write_text((REPO / "accounts.example.toml").read_text(encoding="utf-8"), encoding="utf-8")
    bot_port, sandbox_port = free_port(), free_port()
    with bot_run(path, f"http://127.0.0.1:{bot_port}", "--port", str(bot_port), "--sandbox-port",
                 str(sandbox_port)) as run:
        printed = [line.split("try:", 1)[1] for line in run.output().splitlines() if "try:" in line]
        commands = [shlex.split(c.strip()) for line in printed for c in line.split("   and   ")]
        results = [run_cli(*command[3:], cwd=tmp_path, timeout=60) for command in commands]
    assert [c[-2:] for c in commands] == [["--account", "shop"]] * 2 + [["--account", "staff"]] * 2, printed
    assert all(c[:5] == [".venv/bin/python", "-m", "bot", "simulate", kind] and "--config" in c
               for c, kind in zip(commands, ["text", "voice"] * 2)), printed
    for result in results:
        assert result.returncode == 0 and "passive: 已打开客厅的灯" in result.stdout, result
