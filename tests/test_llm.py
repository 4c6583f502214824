"""handlers.llm against the sandbox's OpenAI-compatible chat endpoint, on real sockets: answers, memory, every
failure class, the rate limit across two bots sharing a store, markdown, and the key kept out of every output.

WeChat's clocks are scaled by ``SCALE`` (delivery_support): a try is dropped at 0.5 s, the budget is 0.4 s.
``tests/test_llm_check.py`` has ``python -m bot check`` and the ``[llm]`` config.
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from delivery_support import NOTICE, local_bot, openid, run_all, wait_for
from llm_support import APOLOGIES, KEY, MORE, chat_calls, llm_config, llm_sandbox, logs, sandbox_fixtures, user_client
from redis_support import drop_prefix, unique_prefix

from bot.config import Config
from bot.sandbox import Sandbox
from bot.sandbox.chat_api import MARKDOWN, STORY, essay
from bot.testing import messages
from bot.testing.net import free_port
from handlers.llm.markdown import to_plain_text

sandbox, _clean = sandbox_fixtures(llm_sandbox)


# -- answers ------------------------------------------------------------------------------------------
def test_a_fast_answer_is_the_passive_reply_and_intents_still_win(sandbox: Sandbox) -> None:
    config = llm_config(sandbox)
    with local_bot(config) as bot:
        client, user = user_client(config, bot, sandbox), openid("fast")
        client.text("warm up", openid=openid("warm"))  # the first request of a process imports the library
        seen = client.text("今天星期几？", openid=user)
        assert seen.statuses == ["reply"] and seen.answers == ["（第1轮）你说：今天星期几？"], seen
        assert client.text("打开客厅的灯", openid=user).answers == ["已打开客厅的灯"]  # handlers.lights first
    body = chat_calls(sandbox)[-1]["json"]
    assert body["model"] == "sandbox-chat" and body["stream"] is True and body["temperature"] == 0.7
    assert body["messages"][0]["role"] == "system" and body["messages"][-1] == {"role": "user",
                                                                                "content": "今天星期几？"}


def test_a_voice_message_is_answered_from_its_transcript(sandbox: Sandbox) -> None:
    config = llm_config(sandbox)
    with local_bot(config) as bot:
        seen = user_client(config, bot, sandbox).send(messages.voice(recognition="讲个笑话吧。", openid=openid("v")))
    assert seen.answers == ["（第1轮）你说：讲个笑话吧。"]


def test_request_fields_and_extra_reach_the_service(sandbox: Sandbox) -> None:
    config = llm_config(sandbox, temperature=0.2, max_tokens=5, system_prompt="",
                        extra={"enable_search": True, "options": {"num_ctx": 4096}})
    with local_bot(config) as bot:
        seen = user_client(config, bot, sandbox).text("一二三四五六七八", openid=openid("x"))
    body = chat_calls(sandbox)[-1]["json"]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 5 and body["enable_search"] is True
    assert body["options"] == {"num_ctx": 4096} and body["messages"][0]["role"] == "user"  # no system prompt
    assert seen.answers == ["（第1轮）"]  # cut at max_tokens (a character is a token in the sandbox)


def test_markdown_in_plain_text_out(sandbox: Sandbox) -> None:
    config = llm_config(sandbox)
    with local_bot(config) as bot:
        seen = user_client(config, bot, sandbox).text("给我一个 markdown 示例", openid=openid("md"))
    assert seen.answers == [to_plain_text(MARKDOWN)], seen
    shown = seen.answers[0]
    prose = shown.replace('print("**不是加粗**")', "")
    assert "**" not in prose and "```" not in shown and "|" not in shown and "# " not in shown
    assert "文档 (https://example.com/docs)" in shown and "• 第一项" in shown and "名称：苹果；价格：3 元" in shown
    assert 'print("**不是加粗**")' in shown  # code stays as written


# -- memory -------------------------------------------------------------------------------------------
def test_memory_across_three_turns_then_reset(sandbox: Sandbox) -> None:
    config = llm_config(sandbox)
    with local_bot(config) as bot:
        client, user = user_client(config, bot, sandbox), openid("mem")
        assert client.text("我叫小明", openid=user).answers == ["（第1轮）你说：我叫小明"]
        assert client.text("我住在上海", openid=user).answers == ["（第2轮）你说：我住在上海"]
        assert client.text("我说过什么", openid=user).answers == ["你之前说过：「我叫小明」、「我住在上海」。"]
        sent = chat_calls(sandbox)[-1]["json"]["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
        assert sent[2]["content"] == "（第1轮）你说：我叫小明"  # the answer the user read is remembered
        assert client.text("清除记忆。", openid=user).answers == ["好的，我已经忘掉之前的对话，我们重新开始吧。"]
        assert client.text("还记得吗", openid=user).answers == ["（第1轮）你说：还记得吗"]
        assert client.text("/RESET", openid=user).answers == ["好的，我已经忘掉之前的对话，我们重新开始吧。"]
    assert len(chat_calls(sandbox)) == 4  # reset words never reach the service


def test_memory_is_bounded_by_turns_and_characters(sandbox: Sandbox) -> None:
    config = llm_config(sandbox, max_history_turns=2, max_history_chars=30)
    with local_bot(config) as bot:
        client, user = user_client(config, bot, sandbox), openid("bound")
        for text in ("一", "二", "三", "四"):
            client.text(text, openid=user)
        assert [m["content"] for m in chat_calls(sandbox)[-1]["json"]["messages"] if m["role"] == "user"] == \
            ["二", "三", "四"]  # two turns kept
        client.text("这是一句很长很长很长很长很长很长的话", openid=user)  # 18 + 26 characters: over 30 alone
        client.text("短", openid=user)
        users = [m["content"] for m in chat_calls(sandbox)[-1]["json"]["messages"] if m["role"] == "user"]
        assert users == ["短"]  # the long turn did not fit, and it pushed the others out


def test_memory_off_keeps_no_session(sandbox: Sandbox) -> None:
    config = llm_config(sandbox, max_history_turns=0)
    with local_bot(config) as bot:
        client, user = user_client(config, bot, sandbox), openid("off")
        client.text("一", openid=user)
        assert client.text("二", openid=user).answers == ["（第1轮）你说：二"]
        assert bot.webhook.services.store.get(f"session:{user}") is None


def test_memory_expires_with_the_session(sandbox: Sandbox) -> None:
    config = llm_config(sandbox, session_ttl=0.6)
    with local_bot(config) as bot:
        client, user = user_client(config, bot, sandbox), openid("ttl")
        client.text("一", openid=user)
        assert client.text("二", openid=user).answers == ["（第2轮）你说：二"]
        time.sleep(0.8)
        assert client.text("三", openid=user).answers == ["（第1轮）你说：三"]


def test_two_messages_in_flight_keep_both_turns(sandbox: Sandbox) -> None:
    """Both read the same (empty) history; the one that finishes second loses the compare-and-set and its turn
    is merged into what the first saved, so the next question sees both."""
    config = llm_config(sandbox)
    with local_bot(config) as bot, logs() as lines:
        client, user = user_client(config, bot, sandbox), openid("race")
        first, second = run_all([lambda: client.text("用 3 秒回答 甲", openid=user),  # 0.3 s at scale 0.1
                                 lambda: client.text("用 6 秒回答 乙", openid=user)])
        assert first.answers and second.answers
        # a streamed answer shows its first sentences at the budget: wait for the slower job to end (and save)
        wait_for(lambda: [line for line in lines if "session merged" in line], 5.0)
        recap = client.text("我说过什么", openid=user).passive[0].content  # (not 乙's continuation, if any)
    assert recap == "你之前说过：「用 3 秒回答 甲」、「用 6 秒回答 乙」。", recap
    assert len([line for line in lines if "session merged" in line]) == 1, lines


# -- failures -----------------------------------------------------------------------------------------
def _wrong_key(sb: Sandbox, config: Config) -> Config:
    sb.configure(chat_api_key="sk-another-key")
    return config


def _fault(status: int) -> Any:
    def inject(sb: Sandbox, config: Config) -> Config:
        sb.inject_fault("chat/completions", 0, http_status=status)
        return config
    return inject


def _config(**llm: Any) -> Any:
    def change(sb: Sandbox, config: Config) -> Config:
        values = {k: (v(sb) if callable(v) else v) for k, v in llm.items()}
        return config.replace(llm=values)
    return change


def _slow_start(sb: Sandbox, config: Config) -> Config:
    sb.configure(chat_latency_s=1.0)
    return config.replace(llm={"timeout_s": 0.3})


def _broken(sb: Sandbox, config: Config) -> Config:
    sb.configure(chat_break_after_chunks=12, chat_chunk_chars=4)
    return config


FAILURES = {  # name: (set the scene, question, the kind logged, text the user reads before the apology)
    "401 wrong key": (_wrong_key, "你好", "auth", ""),
    "403 forbidden": (_fault(403), "你好", "auth", ""),
    "404 no such model": (_config(model="no-such-model"), "你好", "not_found", ""),
    "429 too many requests": (_fault(429), "你好", "rate_limited", ""),
    "500 server error": (_fault(500), "你好", "server", ""),
    "503 unavailable": (_fault(503), "你好", "server", ""),
    "400 bad request": (_fault(400), "你好", "other", ""),
    "timeout before the first byte": (_slow_start, "你好", "timeout", ""),
    "timeout: answer still going": (_config(timeout_s=0.35), "用 20 秒回答", "timeout", "这是第1句，写于第1秒。"),
    "connection refused": (_config(url=lambda sb: f"http://127.0.0.1:{free_port()}/v1"), "你好", "connection", ""),
    "stream broken off": (_broken, "讲个故事", "connection", "从前有一座山，山里有一座庙。"),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_every_failure_class_has_its_log_line_and_apology(sandbox: Sandbox, name: str) -> None:
    scene, question, kind, before = FAILURES[name]
    config = scene(sandbox, llm_config(sandbox))
    with local_bot(config) as bot, logs() as lines:
        seen = user_client(config, bot, sandbox).text(question, openid=openid("err"))
        shown = "".join(seen.answers)
        if before:  # some text was written before it failed: it stays, and the apology follows
            assert shown.startswith(before) and shown.endswith("\n\n" + APOLOGIES[kind]), shown
        else:
            assert seen.answers == [APOLOGIES[kind]], seen
        failed = wait_for(lambda: [line for line in lines if "llm failed" in line], 2)
    assert len(failed) == 1 and f"kind={kind} " in failed[0] and re.search(r"msg_id=\d+", failed[0]), failed
    assert not any(KEY in line for line in lines)


def test_a_service_that_echoes_the_key_does_not_get_it_logged(sandbox: Sandbox) -> None:
    body = '{"error": {"message": "Incorrect API key provided: %s", "type": "invalid_request_error"}}'.replace("%s", KEY)
    sandbox.inject_fault("chat/completions", 0, http_status=401, body=body)
    config = llm_config(sandbox)
    with local_bot(config) as bot, logs(logging.DEBUG) as lines:
        seen = user_client(config, bot, sandbox).text("你好", openid=openid("echo"))
        wait_for(lambda: any("llm failed" in line for line in lines), 2)
    assert seen.answers == [APOLOGIES["auth"]]
    failed = [line for line in lines if "llm failed" in line]
    assert len(failed) == 1 and "Incorrect API key provided: ***" in failed[0], failed
    assert not any(KEY in line for line in lines)


# -- rate limit ---------------------------------------------------------------------------------------
def _away_from_a_minute_boundary(margin_s: float = 4.0) -> None:
    """The limit counts per calendar minute: a test straddling a boundary would count in two windows."""
    into = time.time() % 60
    if into > 60 - margin_s:
        time.sleep(60 - into + 0.1)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_the_rate_limit_holds_across_two_bots_sharing_a_store(sandbox: Sandbox, backend: str, tmp_path: Path) -> None:
    if backend == "redis":
        from redis_support import require_redis
        require_redis()
        url, prefix = "redis://127.0.0.1:6379/12", unique_prefix("llm")
    else:
        url, prefix = f"sqlite:///{tmp_path / 'state.db'}", "wvbllm:"
    config = llm_config(sandbox, store=url, prefix=prefix, per_user_per_minute=3,
                        rate_limited_reply="慢一点，一分钟最多问三次。")
    _away_from_a_minute_boundary()
    try:
        with local_bot(config) as one, local_bot(config) as two:
            clients = [user_client(config, one, sandbox), user_client(config, two, sandbox)]
            user, other = openid("rate"), openid("rate")
            answers = [clients[i % 2].text(f"问题{i}", openid=user).answers[-1] for i in range(5)]
            assert answers[:3] == ["（第1轮）你说：问题0", "（第2轮）你说：问题1", "（第3轮）你说：问题2"], answers
            assert answers[3:] == ["慢一点，一分钟最多问三次。"] * 2
            assert clients[1].text("我也问", openid=other).answers == ["（第1轮）你说：我也问"]  # per user
    finally:
        if backend == "redis":
            drop_prefix(url, prefix)
    assert len(chat_calls(sandbox)) == 4  # refused questions never reach the service


# -- long answers -------------------------------------------------------------------------------------
def _read(seen_all: list[Any]) -> str:
    """All the user read of the long answer, in order: the notice, the "more" markers and the answers to the
    user's own "然后呢"/"继续" (the sandbox echoes them with the turn number) taken out. A streamed answer comes
    in pieces, and the user's messages meanwhile are answered too, between them."""
    text = "".join(a for seen in seen_all for a in seen.answers if a != NOTICE)
    return re.sub(r"(\n\n)?（第\d+轮）你说：(然后呢|继续)", "", text.replace(MORE, ""))


@pytest.mark.parametrize("customer_service", [True, False])
def test_a_12_second_answer_arrives_whole_and_in_order(sandbox: Sandbox, customer_service: bool) -> None:
    sandbox.configure(customer_service=customer_service)
    config = llm_config(sandbox)
    with local_bot(config) as bot:
        client, user = user_client(config, bot, sandbox), openid("s12")
        seen = [client.text("讲个故事", openid=user)]
        for _ in range(6):  # the rest comes by customer service, or with the user's next messages
            if STORY in _read(seen):
                break
            time.sleep(0.5)  # let the 1.2 s (scaled) story finish
            seen.append(client.text("然后呢", openid=user))
    assert _read(seen).count(STORY) == 1, [s.answers for s in seen]


@pytest.mark.parametrize("customer_service", [True, False])
def test_a_40_second_answer_arrives_whole_and_in_order(sandbox: Sandbox, customer_service: bool) -> None:
    sandbox.configure(customer_service=customer_service)
    config = llm_config(sandbox)
    whole = to_plain_text(essay())
    compact = re.sub(r"\s+", "", whole)
    with local_bot(config) as bot:
        client, user = user_client(config, bot, sandbox), openid("s40")
        seen = [client.text("写一篇长文", openid=user)]
        deadline = time.monotonic() + 15
        while compact not in re.sub(r"\s+", "", _read(seen)) and time.monotonic() < deadline:
            time.sleep(0.5)  # let the 4 s (scaled) essay finish, then ask for what is kept
            seen.append(client.text("继续", openid=user))
    read = re.sub(r"\s+", "", _read(seen))
    assert read.count(compact) == 1, [s.answers for s in seen]  # parts are cut at sentence ends: no space lost
    assert all(len(a.encode()) <= 2048 for s in seen for a in s.answers)
