"""A WeCom app's late answers, end to end: the real sandbox's WeCom (``/wecom``) and the real bot on loopback sockets.

A WeCom app may message its users at any time, so an answer later than the passive budget goes by ``message/send``
as soon as it is ready (the default ``[reply] mode`` of a ``wecom_app`` account is ``customer_service``): exactly
once, never also passively, never through ``message/custom/*``, no probe and no typing indicator; a long answer in
parts of at most 2048 bytes, in order; a user outside the app's visible range is unreachable (the answer becomes
undeliverable: one line, no retry); WeCom's per-minute limit (45009) is retried. WeChat's clock runs × 0.1
(tries of 0.5 s, a 0.4 s budget), as in tests/delivery_support.py; on every store backend where it matters.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis_support
from delivery_support import SCALE, budget, local_bot, openid, recording_logs, wait_for
from redis_support import redis_target  # noqa: F401 - fixture

from bot import Context, Router
from bot.config import Config, ConfigError, config_from_dict
from bot.core.text import utf8_len
from bot.delivery.customer_service import UNREACHABLE
from bot.delivery.record import State
from bot.ops.metrics import TYPING
from bot.sandbox import Sandbox
from bot.testing import messages
from bot.testing.wechat_retry import Seen, WeChatRetryClient

CORP, AGENT, SECRET = "wwdelivery", 1000002, "wecom-delivery-secret"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WAIT_S = 5.0 * SCALE
SLOW_S = 2.0 * WAIT_S  # past the first try and the passive budget: only message/send can carry it
LONG = "".join(f"第{i}句，这是一段很长的回答。" for i in range(200))  # ~6,600 UTF-8 bytes: four parts or so

router = Router("wecom-slow")


@router.keyword("长")
def long_answer(ctx: Context) -> str:
    time.sleep(SLOW_S)
    return LONG


@router.fallback
def slow(ctx: Context) -> str:
    time.sleep(SLOW_S)
    return f"慢慢想好了：{ctx.text}"


def wecom_raw(store: str = "memory://", prefix: str = "wvb:", reply: dict[str, Any] | None = None,
              sandbox_url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    """A config whose only account is a WeCom app, with WeChat's clocks scaled (and no ``mode``: the default)."""
    scaled = {"budget_s": budget(SCALE), "wechat_timeout_s": WAIT_S, "lease_s": 3.0 * SCALE, "state_ttl_s": 120.0,
              "sweep_every_s": 0.05}
    return {"storage": {"url": store, "prefix": prefix}, "handlers": {"routers": []},
            "reply": {**scaled, **(reply or {})},
            "accounts": {"staff": {"kind": "wecom_app", "corp_id": CORP, "agent_id": AGENT, "secret": SECRET,
                                   "token": "wecom-token", "encoding_aes_key": KEY, "path": "/wecom",
                                   "api_base_url": f"{sandbox_url}/wecom"}}}


def wecom_config(sandbox_url: str, store: str = "memory://", prefix: str = "wvb:", **reply: Any) -> Config:
    return config_from_dict(wecom_raw(store, prefix, reply, sandbox_url)).accounts[0]


@pytest.fixture
def sandbox() -> Any:
    with Sandbox(wecom_corp_id=CORP, wecom_secret=SECRET, wecom_agent_id=AGENT) as sb:
        yield sb


@pytest.fixture(params=redis_support.BACKENDS)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    return redis_support.backend_target(request.param, request, tmp_path)


def sent_to(sandbox: Sandbox, user: str) -> list[dict[str, Any]]:
    return [m for m in sandbox.custom_messages() if m["touser"] == user]


def sends(sandbox: Sandbox) -> list[tuple[str, int]]:
    """``(touser, errcode)`` of every message/send call, in order."""
    return [(str((c["json"] or {}).get("touser")), c["errcode"]) for c in sandbox.calls()
            if c["path"] == "/wecom/cgi-bin/message/send"]


def deliver(config: Config, bot_url: str, sandbox: Sandbox, text: str, user: str, msg_id: int) -> Seen:
    """The push with WeCom's retries (5 s × SCALE each, three in all), then what reached the user."""
    return WeChatRetryClient(config, bot_url, sandbox.url, wait_s=WAIT_S, cs_wait_s=3.0, settle_s=0.3).text(
        text, openid=user, msg_id=msg_id)


# -- the defaults of a wecom_app account ----------------------------------------------------------------
def test_a_wecom_app_sends_late_answers_by_message_send_by_default() -> None:
    """Its [reply] defaults: no held tries, nothing to learn; explicit keys still win, from either table."""
    config = wecom_config("http://127.0.0.1:9")
    assert (config.reply.mode, config.reply.customer_service, config.reply.max_text_bytes) == (
        "customer_service", True, 2048)
    shared = config_from_dict(wecom_raw(reply={"mode": "auto", "customer_service": "auto"})).accounts[0]
    assert (shared.reply.mode, shared.reply.customer_service) == ("auto", True)  # "auto": nothing to probe
    raw = wecom_raw()
    raw["accounts"]["staff"]["reply"] = {"mode": "passive"}
    assert config_from_dict(raw).accounts[0].reply.mode == "passive"
    raw["accounts"]["shop"] = {"kind": "official_account", "appid": "wx1", "appsecret": "s", "token": "t"}
    shop = config_from_dict(raw).accounts[1]
    assert (shop.reply.mode, shop.reply.customer_service) == ("auto", "auto")  # an Official Account's unchanged


def test_what_wecom_cannot_do_is_refused_or_set_right() -> None:
    raw = wecom_raw()
    raw["accounts"]["staff"]["reply"] = {"max_text_bytes": 4096}
    with pytest.raises(ConfigError, match=r"^\[accounts\.staff\.reply\] max_text_bytes: at most 2048 on a WeCom "
                                          r"app \(WeCom truncates longer texts\), got 4096$"):
        config_from_dict(raw)
    raw = wecom_raw()
    raw["voice"] = {"reply": {"format": "mp3"}}  # shared with an Official Account, which may take mp3
    assert config_from_dict(raw).accounts[0].voice.reply.format == "amr"  # WeCom's media/upload: AMR only


# -- late answers on the real sandbox ---------------------------------------------------------------------
def test_a_slow_answer_arrives_once_by_message_send_in_parts(sandbox: Sandbox, store_target: tuple[str, str]) -> None:
    """Past the passive budget: by message/send, exactly once, never also passively; a long one in ≤ 2048-byte
    parts, in order. Never a customer-service call, a probe or a typing indicator."""
    url, prefix = store_target
    config = wecom_config(sandbox.url, url, prefix, typing_after_s=0.1)
    typing = [TYPING.labels("staff", result)._value.get() for result in ("sent", "failed", "refused")]
    with local_bot(config, router) as bot:
        user, other = openid("slow"), openid("long")
        seen = deliver(config, bot.url, sandbox, "今天吃什么", user, messages.next_msg_id())
        long_seen = deliver(config, bot.url, sandbox, "长", other, messages.next_msg_id())
        time.sleep(0.3)  # room for a duplicate to show itself
    assert seen.passive == [] and "reply" not in seen.statuses, seen
    assert [m["text"]["content"] for m in sent_to(sandbox, user)] == ["慢慢想好了：今天吃什么"]
    assert all(m["agentid"] == AGENT and "truncated" not in m for m in sandbox.custom_messages())
    assert long_seen.passive == [], long_seen
    parts = [m["text"]["content"] for m in sent_to(sandbox, other)]
    assert len(parts) > 1 and all(utf8_len(p) <= 2048 for p in parts), [utf8_len(p) for p in parts]
    assert "".join(parts) == LONG  # in order, nothing lost, nothing twice
    assert sends(sandbox) == [(user, 0)] + [(other, 0)] * len(parts)  # no probe to nobody, no retry
    assert not any("/custom/" in c["path"] for c in sandbox.calls())
    assert [TYPING.labels("staff", result)._value.get() for result in ("sent", "failed", "refused")] == typing


def test_a_user_outside_the_visible_range_makes_the_answer_undeliverable(sandbox: Sandbox,
                                                                          store_target: tuple[str, str]) -> None:
    """81013 (or the user named in ``invaliduser``): no way reaches them (they cannot write to the app for a
    pickup either): undeliverable at once, one line with the msg id, no retry, nothing kept."""
    url, prefix = store_target
    config = wecom_config(sandbox.url, url, prefix)
    sandbox.configure(wecom_users=["someone-else"])
    with local_bot(config, router) as bot, recording_logs() as logs:
        outside, listed = openid("out"), "someone-else"
        first, second = messages.next_msg_id(), messages.next_msg_id()
        seen = deliver(config, bot.url, sandbox, "你好", outside, first)
        sandbox.inject_fault("message/send", 0, body=json.dumps({"errcode": 0, "errmsg": "ok", "invaliduser": listed}))
        deliver(config, bot.url, sandbox, "你好", listed, second)
        states = bot.webhook.delivery.states
        assert wait_for(lambda: all(states.read(f"m:{m}")[1].state is State.UNDELIVERABLE  # type: ignore[union-attr]
                                    for m in (first, second)), 3.0)
        time.sleep(0.3)  # room for a retry to show itself
        lines = {m: logs.lines(f"msg_id={m}") for m in (first, second)}
        records = [states.read(f"m:{m}")[1] for m in (first, second)]
    assert seen.passive == [] and sent_to(sandbox, outside) == [], seen
    assert sends(sandbox) == [(outside, 81013), (listed, 0)]  # one call each: not retried
    for found in lines.values():
        assert len(found) == 1, found
        assert "path=undeliverable" in found[0] and found[0].startswith("ERROR bot.message"), found
        assert "81013" in found[0]
    assert all(r is not None and r.reason == UNREACHABLE and r.kept is None for r in records)
    assert not states.kept_for(outside, 10) and not states.kept_for(listed, 10)


def test_wecoms_per_minute_limit_is_retried_then_sent_once(sandbox: Sandbox) -> None:
    config = wecom_config(sandbox.url)
    sandbox.inject_fault("message/send", 45009, times=1)
    with local_bot(config, router) as bot:
        bot.webhook.delivery.cs.backoff_s = 0.05
        user = openid("busy")
        seen = deliver(config, bot.url, sandbox, "你好", user, messages.next_msg_id())
    assert seen.passive == [] and [m["text"]["content"] for m in sent_to(sandbox, user)] == ["慢慢想好了：你好"]
    assert sends(sandbox) == [(user, 45009), (user, 0)]


def test_wecoms_limit_past_the_retries_keeps_the_answer_for_pickup(sandbox: Sandbox) -> None:
    """Still limited after the bounded retries: kept, and shown with the user's next message."""
    config = wecom_config(sandbox.url)
    sandbox.inject_fault("message/send", 45009, times=3)
    with local_bot(config, router) as bot, recording_logs() as logs:
        bot.webhook.delivery.cs.backoff_s = 0.05
        user, msg_id = openid("limit"), messages.next_msg_id()
        deliver(config, bot.url, sandbox, "你好", user, msg_id)
        assert wait_for(lambda: logs.lines(f"delivery msg_id={msg_id} answer kept for pickup"), 3.0)
        assert bot.webhook.delivery.states.kept_for(user, 10)
    assert sends(sandbox) == [(user, 45009)] * 3 and sent_to(sandbox, user) == []


@pytest.mark.parametrize("reply,says", [({}, "by message/send with agentid 1000002"),
                                        ({"customer_service": False}, "off by config: kept for pickup")])
def test_check_says_how_a_wecom_apps_late_answers_go(reply: dict[str, Any], says: str) -> None:
    from bot.cli.check import account_checks
    late = [r for r in account_checks(wecom_config("http://127.0.0.1:9", **reply)) if r.name == "late answers"]
    assert len(late) == 1 and late[0].detail.startswith(says), late
