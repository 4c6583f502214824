"""Answer voice with voice on every delivery path (scaled clocks: tries of 1 s), against the real sandbox:
its speech endpoint speaks a tone per text, its media endpoints decode what they accept, so each test checks
what the user would hear."""
from __future__ import annotations

import time
from typing import Any

import pytest
from delivery_support import ANSWER, SENTENCE, bot_config, local_bot, openid, recording_logs, start_sandbox, wait_for

from bot.core.router import Router
from bot.testing import BotClient, WeChatRetryClient, messages

SCALE = 0.2
LONG = "，".join(["今天的天气很好我们一起去公园散步吧"] * 42) + "。"  # ~750 characters: ~150 s of sandbox speech


def speaking(sandbox: Any, **reply: Any) -> dict[str, Any]:
    return {"reply": {"when": "voice", "synthesizers": ["openai"], "openai": {"url": sandbox.url}, **reply}}


def story_router() -> Router:
    router = Router("story")

    @router.keyword("故事")
    def story(ctx: Any) -> str:
        return LONG

    @router.keyword("说给我听")
    def spoken(ctx: Any) -> Any:
        return ctx.reply_speech("好的")
    return router


def heard(sandbox: Any, media_id: str) -> dict[str, Any]:
    info = sandbox.media_info(media_id)
    assert info is not None, media_id
    return info


@pytest.mark.parametrize("mode", ["plaintext", "safe"])
def test_a_voice_message_is_answered_with_voice(mode: str) -> None:
    with start_sandbox() as sandbox, recording_logs() as logs:
        config = bot_config(sandbox.url, scale=SCALE, voice=speaking(sandbox))
        with local_bot(config) as bot:
            client = BotClient(config, url=bot.url, mode=mode, openid=openid())
            msg_id = messages.next_msg_id()
            reply = client.send(messages.voice(sandbox.register_voice(SENTENCE)["media_id"], openid=client.openid,
                                               msg_id=msg_id))
            typed = client.text(SENTENCE)  # a typed message keeps its text answer (when = "voice")
    assert reply.type == "voice" and reply.media_id, reply
    info = heard(sandbox, reply.media_id)
    assert info["says"] == ANSWER and 0.5 < info["duration_s"] < 60
    assert typed.content == ANSWER
    line = [m for m in logs.lines(f"msg_id={msg_id} ") if "bot.message" in m]
    assert len(line) == 1 and "synthesizer=openai" in line[0] and "speech_s=" in line[0]


def test_a_handler_asks_for_speech_whatever_the_setting() -> None:
    with start_sandbox() as sandbox:
        config = bot_config(sandbox.url, scale=SCALE, voice=speaking(sandbox, when="never"))
        with local_bot(config, story_router()) as bot:
            reply = BotClient(config, url=bot.url, openid=openid()).text("说给我听")
    assert reply.type == "voice" and heard(sandbox, reply.media_id)["says"] == "好的"


@pytest.mark.parametrize("customer_service", [True, False])
def test_a_150_second_answer_goes_in_three_voice_parts(customer_service: bool) -> None:
    """Parts of ≤ 60 s, in order, once: by customer service after the passive first part, or — an unverified
    account, which may not even upload temporary media — as permanent material, one part per message the
    user sends, each deleted ``material_grace_s`` after it was delivered (WeChat fetches the audio for the
    user after it got the reply), not at once."""
    grace_s = 3.0
    with start_sandbox(customer_service=customer_service, temporary_media=customer_service) as sandbox:
        config = bot_config(sandbox.url, scale=SCALE, voice=speaking(sandbox, when="always", material_grace_s=grace_s),
                            reply={"sweep_every_s": 0.1})
        with local_bot(config, story_router()) as bot:
            user = openid()
            seen = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=5.0 * SCALE, settle_s=1.0).text(
                "故事", openid=user)
            media = [r.media_id for r in seen.passive]
            if customer_service:  # the parts the tries did not carry (all three when a busy machine missed them)
                media = [m for m in media if m]
                owed = 3 - len(media)
                assert wait_for(lambda: len([m for m in sandbox.custom_messages() if m["touser"] == user]) >= owed, 20)
                media += [m["voice"]["media_id"] for m in sandbox.custom_messages() if m["touser"] == user]
            else:  # one part per message the user sends (the first with the tries, or with the first 继续 when
                client = BotClient(config, url=bot.url, openid=user)  # a busy machine made it miss every try)
                media = [m for m in media if m]
                fresh = [heard(sandbox, m) for m in media]  # not deleted at the moment of the reply
                deadline = time.monotonic() + 30  # a busy machine may still be speaking the answer
                while len(media) < 3 and time.monotonic() < deadline:
                    reply = client.text("继续")
                    if reply.is_success:  # nothing kept yet (still speaking), or all parts shown: no router
                        time.sleep(0.3)  # answers 继续
                        continue
                    media.append(reply.media_id)
                    fresh.append(heard(sandbox, reply.media_id))
                assert not any(i["deleted"] for i in fresh), fresh
                assert client.text("继续").is_success  # all parts shown: nothing more
                assert wait_for(lambda: all(heard(sandbox, m)["deleted"] for m in media[:3]), grace_s + 5)
            time.sleep(0.5)
    assert len(media) == 3, media
    infos = [heard(sandbox, m) for m in media[:3]]
    assert all(i["duration_s"] <= 60 for i in infos) and sum(i["duration_s"] for i in infos) > 120, \
        [(i["duration_s"], i["says"]) for i in infos]
    # the sandbox decodes a part back to its text where its tone is long enough to find (not always a middle part)
    assert infos[0]["says"] == LONG and len({i["media_id"] for i in infos}) == 3
    if not customer_service:
        assert all(i["kind"] != "temporary" for i in infos) and all(i["deleted"] for i in infos), infos


def test_speech_that_fails_falls_back_to_the_text_answer() -> None:
    with start_sandbox() as sandbox, recording_logs() as logs:
        sandbox.inject_fault("audio/speech", -1, http_status=503, times=5)
        config = bot_config(sandbox.url, scale=SCALE, voice=speaking(sandbox))
        with local_bot(config) as bot:
            client = BotClient(config, url=bot.url, openid=openid())
            msg_id = messages.next_msg_id()
            reply = client.send(messages.voice(sandbox.register_voice(SENTENCE)["media_id"], openid=client.openid,
                                               msg_id=msg_id))
    assert reply.content == ANSWER
    assert logs.lines(f"voice reply msg_id={msg_id} failed")


@pytest.mark.parametrize("path", ["retry", "customer_service", "pickup"])
def test_a_voice_answer_ready_after_the_budget_still_arrives(path: str) -> None:
    """Speech takes 1.2 s (WeChat's clock × 0.2: 6 s): a later try carries it, or customer service (mode
    customer_service), or — no customer-service API and slower speech — the user's next message."""
    latency = {"retry": 1.2, "customer_service": 1.2, "pickup": 3.2}[path]
    with start_sandbox(customer_service=path != "pickup") as sandbox:
        sandbox.configure(speech_latency_s=latency)
        mode = "customer_service" if path == "customer_service" else "auto"
        config = bot_config(sandbox.url, scale=SCALE, mode=mode, voice=speaking(sandbox, openai={
            "url": sandbox.url, "timeout_s": 8.0}))
        with local_bot(config) as bot:
            user = openid()
            seen = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=5.0 * SCALE, cs_wait_s=5.0).voice(
                sandbox.register_voice(SENTENCE)["media_id"], openid=user)
            later = None
            if path == "pickup":
                time.sleep(1.5)
                later = BotClient(config, url=bot.url, openid=user).text("在吗")
    if path == "retry":
        # a later try carries it: the second on an idle machine, the third on a busy one
        assert seen.statuses[0] == "timeout" and seen.statuses[-1] == "reply", seen
        assert set(seen.statuses[:-1]) == {"timeout"} and seen.passive[0].type == "voice", seen
        media_id = seen.passive[0].media_id
    elif path == "customer_service":
        assert seen.statuses == ["success"] and [m["msgtype"] for m in seen.customer_service] == ["voice"]
        media_id = seen.customer_service[0]["voice"]["media_id"]
    else:
        assert seen.passive[0].content == "回答还在准备中，稍后发任意消息即可收到。"
        assert later is not None and later.type == "voice", later
        media_id = later.media_id
    assert heard(sandbox, media_id)["says"] == ANSWER


def streamed_story_router(sentences: list[str], pause_s: float) -> Router:
    router = Router("stream")

    @router.keyword("故事")
    def story(ctx: Any) -> Any:
        def chunks() -> Any:
            for sentence in sentences:
                time.sleep(pause_s)
                yield sentence
        return ctx.stream(chunks())
    return router


@pytest.mark.parametrize("customer_service", [True, False])
def test_a_streamed_answer_to_a_voice_message_is_heard_not_read(customer_service: bool) -> None:
    """With ``when = "voice"`` and no ``with_text``, an answer a handler streams is spoken whole once it is
    written: no sentences shown as text at the budget, then the same again as speech (issue 19, item 8)."""
    story = ["从前有一座山。", "山里有一座庙。", "庙里有个老和尚。"]
    with start_sandbox(customer_service=customer_service) as sandbox:
        config = bot_config(sandbox.url, scale=SCALE, voice=speaking(sandbox))
        with local_bot(config, streamed_story_router(story, 0.3)) as bot:  # 0.9 s: past the 0.45 s budget
            user = openid()
            seen = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=5.0 * SCALE, cs_wait_s=5.0).voice(
                sandbox.register_voice("讲个故事")["media_id"], openid=user)
            voices = [r.media_id for r in seen.passive if r.type == "voice"] + [
                m["voice"]["media_id"] for m in seen.customer_service if m["msgtype"] == "voice"]
            if not voices:  # kept for pickup (no customer service, and ready after the last try)
                time.sleep(1.0)
                later = BotClient(config, url=bot.url, openid=user).text("在吗")
                assert later.type == "voice", later
                voices.append(later.media_id)
    shown = [r for r in seen.passive if r.type == "text"] + [m for m in seen.customer_service
                                                              if m["msgtype"] == "text"]
    assert shown in ([], [seen.passive[0]]) and all(
        r.content == "回答还在准备中，稍后发任意消息即可收到。" for r in shown if hasattr(r, "content")), seen
    assert len(voices) == 1 and heard(sandbox, voices[0])["says"] == "".join(story), seen
