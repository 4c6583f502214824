"""Conversation state: ``ctx.session`` in the configured store (memory, SQLite, Redis), saved only when changed."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest
from redis_support import any_target, redis_target, shared_target  # noqa: F401 - fixtures are found by name

from bot import Context, Router
from bot.config import Config
from bot.core.session import KEY, Sessions, dumps
from bot.core.webhook import Webhook
from bot.runtime import Services, build_services
from bot.store import Store, open_store
from bot.testing import BotClient, test_config
from handlers import dialog, echo, lights

ALICE, BOB = "oALICE000000000000000000000", "oBOB00000000000000000000000"


def config_for(target: tuple[str, str], ttl_s: float = 60.0) -> Config:
    url, prefix = target
    return test_config(storage={"url": url, "prefix": prefix}, session={"ttl_s": ttl_s})


@pytest.fixture
def services(any_target: tuple[str, str]) -> Iterator[Services]:
    built = build_services(config_for(any_target))
    yield built
    built.store.close()


def home(config: Config, services: Services, openid: str = ALICE) -> BotClient:
    """dialog, lights, echo over the given services, as ``python -m bot serve`` builds them (with delivery)."""
    from bot.core.router import combine
    from bot.runtime import build_webhook
    return BotClient(build_webhook(config, combine([dialog.router, lights.router, echo.router]), services=services),
                     openid=openid)


def stored(store: Store, openid: str = ALICE) -> dict | None:
    raw = store.get(KEY.format(openid=openid))
    return None if raw is None else json.loads(raw)


# -- the two-turn dialog on every backend ----------------------------------------------------------------
def test_two_turn_dialog(any_target: tuple[str, str], services: Services) -> None:
    config = config_for(any_target)
    alice, bob = home(config, services), home(config, services, BOB)
    assert alice.text("打开灯").content == "哪个房间？"
    assert stored(services.store) == {dialog.PENDING: "打开"}
    assert bob.text("客厅").content == "客厅"                       # Bob has no pending question: echo
    assert alice.voice(recognition="客厅。").content == "已打开客厅的灯"
    assert stored(services.store) is None                            # emptied → deleted
    assert alice.text("客厅").content == "客厅"                     # the dialog is over


def test_dialog_survives_another_webhook_on_the_same_store(shared_target: tuple[str, str]) -> None:
    """Like two gunicorn workers: the second turn is answered by another webhook with its own store client."""
    config = config_for(shared_target)
    first, second = build_services(config), build_services(config)
    try:
        assert home(config, first).text("关灯").content == "哪个房间？"
        assert home(config, second).text("卧室").content == "已关闭卧室的灯"
    finally:
        first.store.close()
        second.store.close()


def test_dialog_cancel_unknown_room_and_new_command(any_target: tuple[str, str], services: Services) -> None:
    alice = home(config_for(any_target), services)
    assert alice.text("打开灯").content == "哪个房间？"
    assert alice.text("阳台").content.startswith("没有找到“阳台”，可以说：")   # still waiting
    assert alice.text("取消").content == "好的，已取消。"
    assert alice.text("打开灯").content == "哪个房间？"
    assert alice.text("关闭厨房的灯").content == "已关闭厨房的灯"     # a whole command ends the question
    assert stored(services.store) is None


def test_session_expires(any_target: tuple[str, str]) -> None:
    config = config_for(any_target, ttl_s=0.3)
    services = build_services(config)
    try:
        alice = home(config, services)
        assert alice.text("打开灯").content == "哪个房间？"
        ttl = services.store.ttl(KEY.format(openid=ALICE))
        assert ttl is not None and 0 < ttl <= 0.3
        time.sleep(0.4)
        assert alice.text("客厅").content == "客厅"  # the question expired: echo answers
    finally:
        services.store.close()


def test_saved_only_when_changed(any_target: tuple[str, str], services: Services) -> None:
    """An answer that leaves the session alone writes nothing: the expiry keeps counting down."""
    config = config_for(any_target, ttl_s=30.0)
    alice = home(config, services)
    assert alice.text("打开灯").content == "哪个房间？"
    key = KEY.format(openid=ALICE)
    raw, ttl = services.store.get(key), services.store.ttl(key)
    time.sleep(0.3)
    assert alice.event("subscribe").content == "欢迎关注！发一段语音或文字试试。"
    assert alice.text("打开灯").content == "哪个房间？"  # sets the same value again: no change either
    assert services.store.get(key) == raw
    left = services.store.ttl(key)
    assert ttl is not None and left is not None and left <= ttl - 0.25, (ttl, left)


# -- Sessions on its own ---------------------------------------------------------------------------------
@pytest.fixture
def store(any_target: tuple[str, str]) -> Iterator[Store]:
    url, prefix = any_target
    with open_store(url, prefix=prefix) as s:
        yield s


def test_save_reports_writes(store: Store) -> None:
    sessions = Sessions(store, ttl_s=60)
    session, snapshot = sessions.load(ALICE)
    assert session == {}
    assert sessions.save(ALICE, {}, snapshot) is False                     # unchanged, still absent
    assert sessions.save(ALICE, {"b": 1, "a": [1, "二"]}, snapshot) is True
    assert store.get(KEY.format(openid=ALICE)) == '{"a":[1,"二"],"b":1}'  # canonical JSON
    session, snapshot = sessions.load(ALICE)
    assert session == {"a": [1, "二"], "b": 1}
    assert sessions.save(ALICE, {"a": [1, "二"], "b": 1}, snapshot) is False
    assert sessions.save(ALICE, {}, snapshot) is True
    assert store.get(KEY.format(openid=ALICE)) is None


def test_concurrent_change_wins_and_is_not_overwritten(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    sessions = Sessions(store, ttl_s=60)
    _, first = sessions.load(ALICE)
    _, second = sessions.load(ALICE)
    assert sessions.save(ALICE, {"turn": "first"}, first, "m1") is True
    with caplog.at_level(logging.WARNING, "bot.session"):
        assert sessions.save(ALICE, {"turn": "second"}, second, "m2") is False
    assert json.loads(store.get(KEY.format(openid=ALICE)) or "") == {"turn": "first"}
    assert any("msg_id=m2" in r.getMessage() and "meanwhile" in r.getMessage() for r in caplog.records)


def test_unreadable_session_starts_afresh(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    store.set(KEY.format(openid=ALICE), "[1, 2")
    sessions = Sessions(store, ttl_s=60)
    with caplog.at_level(logging.WARNING, "bot.session"):
        session, snapshot = sessions.load(ALICE)
    assert session == {} and "unreadable" in caplog.text
    assert sessions.save(ALICE, {"x": 1}, snapshot) is True
    assert store.get(KEY.format(openid=ALICE)) == '{"x":1}'


def test_dumps_is_canonical() -> None:
    assert dumps({"b": 1, "a": "中"}) == dumps({"a": "中", "b": 1}) == '{"a":"中","b":1}'


# -- without a store, and with a broken one -----------------------------------------------------------------
def counter() -> Router:
    router = Router("counter")

    @router.text
    def count(ctx: Context) -> str:
        ctx.session["n"] = ctx.session.get("n", 0) + 1
        if ctx.text == "bad":
            ctx.session["obj"] = object()
        return str(ctx.session["n"])
    return router


def test_bare_webhook_keeps_sessions_in_memory() -> None:
    client = BotClient(Webhook(test_config(), counter()))
    assert [client.text("x").content for _ in range(3)] == ["1", "2", "3"]
    assert BotClient(Webhook(test_config(), counter())).text("x").content == "1"  # another bot, its own memory


def test_session_that_is_not_json_is_not_saved(caplog: pytest.LogCaptureFixture) -> None:
    client = BotClient(Webhook(test_config(), counter()))
    assert client.text("x").content == "1"
    with caplog.at_level(logging.ERROR, "bot.session"):
        assert client.text("bad", msg_id=4242).content == "2"   # the user still gets the answer
    assert "msg_id=4242" in caplog.text and "not JSON" in caplog.text
    assert client.text("x").content == "2"                     # the bad change was dropped whole


def test_store_down_costs_the_session_not_the_answer(caplog: pytest.LogCaptureFixture) -> None:
    """A Redis nobody listens on: every store call fails, the user is still answered."""
    down = open_store("redis://127.0.0.1:9/0", prefix="wvbtest:down:")
    webhook = Webhook(test_config(), counter(), services=Services(store=down, client=None))
    with caplog.at_level(logging.WARNING, "bot.session"):
        assert BotClient(webhook).text("x").content == "1"
        assert BotClient(webhook).text("x").content == "1"
    assert "session load failed" in caplog.text
