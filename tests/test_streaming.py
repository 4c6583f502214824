"""Answers that arrive as they are written (``ctx.stream``): the sentences written by the budget of the try that
must answer go out then; the rest follows, exactly once and in order (scaled clocks: tries of 1 s)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from delivery_support import bot_config, local_bot, openid, recording_logs, start_sandbox, wait_for

from bot.core.router import Router
from bot.testing import BotClient, WeChatRetryClient, messages

SCALE = 0.2
MARKER = "（未完，回复任意文字继续）"
SENTENCES = [f"这是第{i}句。" for i in range(12)]


def streaming_router(every_s: float = 0.3) -> Router:
    router = Router("stream")

    @router.fallback
    def answer(ctx: Any) -> Any:
        if ctx.text == "quick":
            return ctx.stream(iter(["很快", "就好。", "完"]))

        def chunks() -> Iterator[str]:
            for sentence in SENTENCES:
                time.sleep(every_s)
                yield sentence[:2]
                yield sentence[2:]
        return ctx.stream(chunks())
    return router


def test_a_stream_done_within_the_budget_is_one_passive_reply() -> None:
    with start_sandbox() as sandbox:
        config = bot_config(sandbox.url, scale=SCALE)
        with local_bot(config, streaming_router()) as bot:
            assert BotClient(config, url=bot.url, openid=openid()).text("quick").content == "很快就好。完"


@pytest.mark.parametrize("voice", [False, True])
def test_with_customer_service_the_first_try_shows_what_is_written_and_the_rest_follows(voice: bool) -> None:
    with start_sandbox() as sandbox, recording_logs() as logs:
        config = bot_config(sandbox.url, scale=SCALE)
        with local_bot(config, streaming_router()) as bot:
            user, msg_id = openid(), messages.next_msg_id()
            client = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=5.0 * SCALE, cs_wait_s=6.0,
                                       settle_s=0.5)
            if voice:
                seen = client.voice(sandbox.register_voice("讲个故事")["media_id"], openid=user, msg_id=msg_id)
            else:
                seen = client.text("讲个故事", openid=user, msg_id=msg_id)
            wait_for(lambda: logs.lines(f"msg_id={msg_id} ") and [m for m in logs.lines(f"msg_id={msg_id} ")
                                                                   if "bot.message" in m], 6.0)
            seen.customer_service = client.customer_service_messages(user)
    assert seen.statuses == ["reply"], seen
    first = seen.passive[0].content or ""
    assert first and SENTENCES[0] in first and not first.endswith(MARKER)
    assert seen.answered_s is not None and seen.answered_s < 1.0  # the user reads something within the try
    assert "".join(seen.answers) == "".join(SENTENCES), seen.answers  # whole, in order, once
    assert len([m for m in logs.lines(f"msg_id={msg_id} ") if "bot.message" in m]) == 1


def test_without_customer_service_the_last_try_shows_what_is_written_and_the_rest_is_picked_up() -> None:
    with start_sandbox(customer_service=False) as sandbox, recording_logs() as logs:
        config = bot_config(sandbox.url, scale=SCALE)
        with local_bot(config, streaming_router()) as bot:
            user, msg_id = openid(), messages.next_msg_id()
            seen = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=5.0 * SCALE).text(
                "讲个故事", openid=user, msg_id=msg_id)
            assert wait_for(lambda: logs.lines(f"delivery msg_id={msg_id} answer kept for pickup"), 5.0)
            later = BotClient(config, url=bot.url, openid=user).text("quick")
    assert seen.statuses == ["timeout", "timeout", "reply"], seen
    first = seen.passive[0].content or ""
    assert first.endswith(MARKER) and first.startswith(SENTENCES[0])
    rest = (later.content or "").removesuffix("\n\n很快就好。完")
    assert first.removesuffix(MARKER) + rest == "".join(SENTENCES), (first, later.content)
    picked = [m for m in logs.lines(f"msg_id={msg_id} ") if "path=pickup" in m]
    assert len(picked) == 1
