"""Every push WeChat sends an Official Account, by its real name (issue 12, item 7).

wechatpy parses events it does not know into ``UnknownMessage`` (type "unknown", no event) and renames some
(``WifiConnected`` → "wificconnected", ``ShakearoundUserShake`` → "shakearound_user_shake"), so handlers
registered by the names in WeChat's documentation never ran. The wire's ``MsgType`` and ``Event`` decide
``ctx.type`` and ``ctx.event``. Each push of tests/wechat_pushes.py goes over real HTTP to a bot in plaintext and
in safe mode: the handler registered for its documented name answers, nothing is a 5xx, nothing logs a traceback.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from delivery_support import local_bot
from wechat_pushes import EVENTS, MESSAGES, QR_SUBSCRIBE, push

from bot import Context, Router
from bot.core.webhook import Webhook
from bot.testing import BotClient, messages, test_config


def tagged(router: Router) -> Router:
    """One handler per documented name, each answering which one it is and what the context says."""
    def answer(tag: str) -> Any:
        return lambda ctx: f"{tag}|{ctx.type}|{ctx.event}"
    for msg_type in MESSAGES:
        if msg_type in ("text", "voice"):
            getattr(router, msg_type)(answer(f"message {msg_type}"))
        else:
            router.message(msg_type)(answer(f"message {msg_type}"))
    for event in EVENTS:
        router.event(event)(answer(f"event {event}"))
    router.fallback(lambda ctx: f"fallback|{ctx.type}|{ctx.event}")
    return router


@pytest.fixture(scope="module")
def bot() -> Iterator[Any]:
    with local_bot(test_config(), tagged(Router("every push"))) as running:
        yield running


@pytest.fixture
def no_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails the test when anything logged an error or a traceback while it ran."""
    caplog.set_level(logging.INFO)
    yield
    bad = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info or r.exc_text
           or "Traceback" in r.getMessage()]
    assert bad == []


def send(bot: Any, mode: str, xml: str) -> Any:
    client = BotClient(bot.webhook.config, url=bot.url, mode=mode)  # type: ignore[arg-type]
    return client.send(xml)


def fresh(tag: str) -> dict[str, Any]:
    return {"openid": f"o{tag}{messages.next_msg_id()}"[:28], "time": messages.next_create_time()}


@pytest.mark.parametrize("mode", ["plaintext", "safe"])
@pytest.mark.parametrize("msg_type", sorted(MESSAGES))
def test_every_message_type_reaches_its_handler(bot: Any, no_errors: None, mode: str, msg_type: str) -> None:
    reply = send(bot, mode, push(msg_type, None, MESSAGES[msg_type], **fresh("msg")))
    assert reply.status == 200, reply
    assert reply.content == f"message {msg_type}|{msg_type}|None"


@pytest.mark.parametrize("mode", ["plaintext", "safe"])
@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_event_reaches_the_handler_of_its_documented_name(bot: Any, no_errors: None, mode: str,
                                                                event: str) -> None:
    reply = send(bot, mode, push("event", event, EVENTS[event], **fresh("evt")))
    assert reply.status == 200, reply
    assert reply.content == f"event {event}|event|{event.lower()}"


@pytest.mark.parametrize("mode", ["plaintext", "safe"])
def test_a_subscription_through_a_qr_code_is_subscribe(bot: Any, mode: str) -> None:
    reply = send(bot, mode, push("event", "subscribe", QR_SUBSCRIBE, **fresh("qr")))
    assert reply.content == "event subscribe|event|subscribe"


def test_wechatpys_names_and_message_stay_available() -> None:
    """``ctx.message`` is still wechatpy's parse (its fields, its names): a handler written for wechatpy's names
    keeps working, and a QR subscription keeps its scene id."""
    seen: list[tuple[str, str | None, str]] = []
    router = Router()

    def record(ctx: Context) -> str:
        seen.append((ctx.event or "", getattr(ctx.message, "event", None), type(ctx.message).__name__))
        return "ok"
    for name in ("wificconnected", "shakearound_user_shake", "subscribe_scan"):
        router.event(name)(record)
    client = BotClient(Webhook(test_config(encrypted=False), router))
    for event, body in (("WifiConnected", EVENTS["WifiConnected"]), ("ShakearoundUserShake",
                                                                      EVENTS["ShakearoundUserShake"]),
                        ("subscribe", QR_SUBSCRIBE)):
        assert client.send(push("event", event, body, **fresh("alias"))).content == "ok"
    assert seen == [("wificonnected", "wificconnected", "WiFiConnectedEvent"),
                    ("shakearoundusershake", "shakearound_user_shake", "ShakearoundUserShakeEvent"),
                    ("subscribe", "subscribe_scan", "SubscribeScanEvent")]


def test_unknown_events_and_types_are_logged_by_their_names(caplog: pytest.LogCaptureFixture) -> None:
    """The ``bot.message`` line names the wire's type, not wechatpy's "unknown"."""
    caplog.set_level(logging.INFO, logger="bot.message")
    client = BotClient(Webhook(test_config(encrypted=False), tagged(Router())))
    client.send(push("miniprogrampage", None, MESSAGES["miniprogrampage"], **fresh("log")))
    client.send(push("event", "PUBLISHJOBFINISH", EVENTS["PUBLISHJOBFINISH"], **fresh("log")))
    types = [getattr(r, "fields", {}).get("type") for r in caplog.records if r.name == "bot.message"]
    assert types == ["miniprogrampage", "event"]
