"""Every answer reaches the user, whole, on every kind of account (scaled-down clocks: tries of 1 s).

Against the real sandbox over HTTP and a bot on a real socket: accounts without the customer-service API
(48001) keep late answers for pickup with the user's next message; long answers go in parts; answers no try
will carry are sent by the sweeper; ownership is exact.
"""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis_support
from delivery_support import NOTICE, bot_config, local_bot, openid, recording_logs, start_sandbox, wait_for
from redis_support import redis_target  # noqa: F401 - fixture

from bot.core.answer import Answer
from bot.core.pipeline import Answered
from bot.core.router import Router
from bot.delivery.record import Record, State
from bot.ops.trace import Trace
from bot.testing import BotClient, WeChatRetryClient, messages

SCALE = 0.2
WAIT_S = 5.0 * SCALE
MARKER = "（未完，回复任意文字继续）"
LONG = "".join(f"第{i}句话，这是一段很长的回答。" for i in range(200))  # ~3,000 characters, ~9 KB


def slow_router() -> Router:
    """``slow N`` answers after N seconds; ``long`` answers LONG; anything else is echoed."""
    router = Router("slow")

    @router.fallback
    def answer(ctx: Any) -> str:
        text = ctx.text or ""
        if text.startswith("slow"):
            time.sleep(float(text.split()[1]))
            return f"慢答案 {text}"
        if text == "long":
            return LONG
        return f"回声 {text}"
    return router


def retry_client(config: Any, bot: Any, sandbox: Any, **kw: Any) -> WeChatRetryClient:
    return WeChatRetryClient(config, bot.url, sandbox.url, wait_s=WAIT_S, **kw)


def shown_lines(logs: Any, msg_id: int) -> list[str]:
    return [line for line in logs.lines(f"msg_id={msg_id} ") if "bot.message" in line]


@pytest.fixture(params=redis_support.BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Any) -> tuple[str, str]:
    return redis_support.backend_target(request.param, request, tmp_path)


def test_without_customer_service_the_late_answer_is_picked_up_with_the_next_message(
        store: tuple[str, str]) -> None:
    """An unverified account: the last try shows the notice, 48001 is remembered (logged once), and the
    answer comes first in the reply to the user's next message, whose own answer follows; never twice."""
    url, prefix = store
    with start_sandbox(customer_service=False) as sandbox, recording_logs() as logs:
        config = bot_config(sandbox.url, scale=SCALE, store=url, prefix=prefix)
        with local_bot(config, slow_router()) as bot:
            user, first, second = openid(), messages.next_msg_id(), messages.next_msg_id()
            seen = retry_client(config, bot, sandbox).text("slow 3.6", openid=user, msg_id=first)
            assert seen.statuses == ["timeout", "timeout", "reply"] and seen.answers == [NOTICE], seen
            assert wait_for(lambda: logs.lines(f"delivery msg_id={first} answer kept for pickup"), 3.0)
            later = retry_client(config, bot, sandbox).text("你好", openid=user, msg_id=second)
            third = BotClient(config, url=bot.url, openid=user).text("再见")
            other = BotClient(config, url=bot.url, openid=openid()).text("别人")
            seen2 = retry_client(config, bot, sandbox).text("slow 3.6", openid=user)  # CS not tried again
            time.sleep(0.3)
    assert later.answers == ["慢答案 slow 3.6\n\n回声 你好"], later
    assert third.content == "回声 再见" and other.content == "回声 别人"  # picked up once, by its user only
    assert seen2.answers == [NOTICE]
    tried = [c for c in sandbox.calls() if c["api"] in ("send", "typing")]  # typing shows it as well as a send
    assert [c["errcode"] for c in tried] == [48001]  # remembered for the account after the first refusal
    warnings = logs.lines("customer-service API unavailable for this account (errcode 48001")
    assert len(warnings) == 1 and "needs a verified account" in warnings[0]
    picked = [line for line in shown_lines(logs, first) if "path=pickup" in line]
    assert len(picked) == 1 and "waited_s=" in picked[0], logs.messages
    assert len(shown_lines(logs, first)) == 1 and len(shown_lines(logs, second)) == 1


@pytest.mark.parametrize("customer_service", [True, False])
def test_a_long_answer_arrives_whole_in_parts(customer_service: bool) -> None:
    """3,000 characters: every part within 2048 bytes, cut at sentence ends, in order and whole — by customer
    service after the passive first part, or one part per message the user sends (with the marker)."""
    with start_sandbox(customer_service=customer_service) as sandbox, recording_logs() as logs:
        config = bot_config(sandbox.url, scale=SCALE)
        with local_bot(config, slow_router()) as bot:
            user, msg_id = openid(), messages.next_msg_id()
            seen = retry_client(config, bot, sandbox, settle_s=1.0).text("long", openid=user, msg_id=msg_id)
            shown = list(seen.answers)
            client = BotClient(config, url=bot.url, openid=user)
            for _ in range(10):
                if not shown[-1].endswith(MARKER):
                    break
                shown.append(client.text("继续").content or "")
    asked = len(shown) - 1  # each "继续" is answered too: behind the kept parts, after the last one
    parts = shown if customer_service else [s.removesuffix(MARKER) for s in shown[:-1]] + \
        [shown[-1].removesuffix("\n\n回声 继续" * asked)]
    assert all(len(s.encode()) <= 2048 for s in shown), [len(s.encode()) for s in shown]
    assert len(parts) == 5 and "".join(parts) == LONG, [p[:20] for p in parts]
    assert all(p.endswith("。") for p in parts)
    if customer_service:
        assert seen.statuses == ["reply"] and len(seen.customer_service) == 4
        assert not any(s.endswith(MARKER) for s in shown)
    else:
        assert shown[-1].endswith("\n\n回声 继续" * asked)  # the last part, then the new messages' answers
    line = [m for m in shown_lines(logs, msg_id)]
    assert len(line) == 1 and "parts=5" in line[0], logs.messages


@pytest.mark.parametrize("customer_service", [True, False])
def test_an_answer_no_try_will_carry_is_sent_by_the_sweeper(customer_service: bool) -> None:
    """WeChat sends only the first try: the result, ready after it, still goes out (customer service), or is
    kept for pickup, once the last try would have passed."""
    with start_sandbox(customer_service=customer_service) as sandbox, recording_logs() as logs:
        config = bot_config(sandbox.url, scale=SCALE, reply={"sweep_every_s": 0.2})
        with local_bot(config, slow_router()) as bot:
            user, msg_id = openid(), messages.next_msg_id()
            seen = retry_client(config, bot, sandbox, tries=1, cs_wait_s=0).text("slow 1.2", openid=user,
                                                                                   msg_id=msg_id)
            assert seen.statuses == ["timeout"]
            if customer_service:
                sent = wait_for(lambda: [m for m in sandbox.custom_messages() if m["touser"] == user], 6.0)
                assert [m["text"]["content"] for m in sent] == ["慢答案 slow 1.2"]
                # the sandbox has the message before the bot has its reply: the line comes after that reply
                assert wait_for(lambda: shown_lines(logs, msg_id), 5.0), logs.messages
            else:
                assert wait_for(lambda: logs.lines(f"delivery msg_id={msg_id} answer kept for pickup"), 6.0)
                assert BotClient(config, url=bot.url, openid=user).text("在吗").content == "慢答案 slow 1.2\n\n回声 在吗"
    assert len(shown_lines(logs, msg_id)) == 1


def test_a_job_whose_owner_died_after_the_last_try_is_finished_by_the_sweeper() -> None:
    """No try will ever come for it: the sweeper finds the dead owner, takes the job over and sends it."""
    with start_sandbox() as sandbox, recording_logs() as logs:
        config = bot_config(sandbox.url, scale=SCALE, reply={"sweep_every_s": 0.2})
        with local_bot(config, slow_router()) as bot:
            user, msg_id = openid(), messages.next_msg_id()
            push = messages.text("慢一点", openid=user, msg_id=msg_id)
            store = bot.webhook.delivery.store
            dead = "thread@gone:1:dead00#run"
            created = time.time() - 10
            store.add(f"dl:m:{msg_id}", Record(State.RUNNING, created, dead, openid=user, push=push).dump(), ttl=60,
                      index=[("open", f"m:{msg_id}", created + 3.1)])
            BotClient(config, url=bot.url, openid=openid()).text("wake the sweeper")
            sent = wait_for(lambda: [m for m in sandbox.custom_messages() if m["touser"] == user], 5.0)
    assert [m["text"]["content"] for m in sent] == ["回声 慢一点"]
    assert len(logs.lines(f"delivery msg_id={msg_id} taking the job over")) == 1


def test_a_displaced_job_never_delivers() -> None:
    """A job taken over while it ran finishes to nothing: only the owner in the record may finish."""
    with start_sandbox() as sandbox:
        config = bot_config(sandbox.url, scale=SCALE)
        with local_bot(config, slow_router()) as bot:
            delivery, user = bot.webhook.delivery, openid()
            key = f"m:{messages.next_msg_id()}"
            record = Record(State.RUNNING, time.time(), "thread@host:1:new000#2", openid=user)
            delivery.store.add(f"dl:{key}", record.dump(), ttl=60)
            delivery.jobs.finish(key, Answered(Answer.text("displaced"), Trace(key)), "thread@host:1:old000#1")
            assert json.loads(delivery.store.get(f"dl:{key}")) == json.loads(record.dump())
            delivery.jobs.finish(key, Answered(Answer.text("owner"), Trace(key)), "thread@host:1:new000#2")
            assert json.loads(delivery.store.get(f"dl:{key}"))["answer"] == [{"text": "owner"}]


def test_typing_is_shown_once_for_a_long_job_on_a_customer_service_account() -> None:
    with start_sandbox() as sandbox:
        config = bot_config(sandbox.url, scale=SCALE, reply={"typing_after_s": 0.3, "sweep_every_s": 0.1})
        with local_bot(config, slow_router()) as bot:
            user, quick = openid(), openid()
            retry_client(config, bot, sandbox).text("slow 0.7", openid=user)
            BotClient(config, url=bot.url, openid=quick).text("快")
            time.sleep(0.3)
    typing = [c for c in sandbox.typing_calls() if c.get("touser") == user]
    assert len(typing) == 1 and typing[0]["command"] == "Typing" and typing[0]["errcode"] == 0, typing
    assert not [c for c in sandbox.typing_calls() if c.get("touser") == quick]


def test_a_kept_answer_expires_unpicked_and_events_pick_nothing_up() -> None:
    with start_sandbox(customer_service=False) as sandbox, recording_logs() as logs:
        config = bot_config(sandbox.url, scale=SCALE, reply={"pickup_ttl_s": 1.5, "sweep_every_s": 0.1})
        with local_bot(config, slow_router()) as bot:
            user, msg_id = openid(), messages.next_msg_id()
            retry_client(config, bot, sandbox).text("slow 3.6", openid=user, msg_id=msg_id)
            assert wait_for(lambda: logs.lines(f"delivery msg_id={msg_id} answer kept for pickup"), 3.0)
            BotClient(config, url=bot.url, openid=user).event("subscribe")  # not a message: picks nothing up
            expired = wait_for(lambda: [m for m in shown_lines(logs, msg_id) if "path=expired" in m], 4.0)
            later = BotClient(config, url=bot.url, openid=user).text("还在吗")
    assert len(expired) == 1 and "ERROR" in expired[0]
    assert later.content == "回声 还在吗"


def test_text_is_cleaned_of_characters_xml_cannot_carry() -> None:
    router = Router("raw")

    @router.fallback
    def answer(ctx: Any) -> str:
        return {"ctl": "a\x00b\x07c\x1bd", "only": "\x01\x02"}.get(ctx.text or "", "x")
    with start_sandbox() as sandbox:
        config = bot_config(sandbox.url, scale=SCALE)
        with local_bot(config, router) as bot:
            client = BotClient(config, url=bot.url, openid=openid())
            assert client.text("ctl").content == "abcd"
            assert client.text("only").is_success  # nothing visible left: nothing is sent
