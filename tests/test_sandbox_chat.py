"""The sandbox's OpenAI-compatible chat endpoint on the wire: real server-sent events as OpenAI sends them,
``/v1/models``, the key, models, pacing, a stream that breaks off, and injected faults. (Read here with plain
HTTP, to check the server's side; the bot reads it through the openai library.)"""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from delivery_support import start_sandbox
from llm_support import sandbox_fixtures

from bot.sandbox import Sandbox, SandboxError
from bot.sandbox.chat_api import STORY, answer_for, essay, timed

KEY = "sk-sandbox-chat-test"


sandbox, _clean = sandbox_fixtures(lambda: start_sandbox(0.05, chat_api_key=KEY, chat_chunks_per_s=0.0))


def post(sandbox: Sandbox, body: dict[str, Any], key: str | None = KEY, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{sandbox.url}/v1/chat/completions", json=body, headers=headers, timeout=10, **kw)


def events(response: requests.Response) -> list[str]:
    """The ``data:`` payloads of a server-sent event stream, each event ended by a blank line."""
    raw = response.content.decode("utf-8")
    assert raw.endswith("\n\n")
    out = []
    for event in raw.split("\n\n")[:-1]:
        assert event.startswith("data: "), event
        out.append(event[len("data: "):])
    return out


def question(text: str, **more: Any) -> dict[str, Any]:
    return {"model": "sandbox-chat", "messages": [{"role": "user", "content": text}], **more}


def test_a_stream_is_server_sent_events_as_openai_sends_them(sandbox: Sandbox) -> None:
    r = post(sandbox, question("hi there", stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    data = events(r)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                                            "finish_reason": "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len("（第1轮）你说：hi there")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "（第1轮）你说：hi there"


def test_a_plain_answer_and_max_tokens(sandbox: Sandbox) -> None:
    r = post(sandbox, question("一二三四五", max_tokens=4))
    body = r.json()
    assert r.status_code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "（第1轮"}
    assert body["choices"][0]["finish_reason"] == "length"


def test_models_key_and_unknown_model(sandbox: Sandbox) -> None:
    models = requests.get(f"{sandbox.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()
    assert [m["id"] for m in models["data"]] == ["sandbox-chat"] and models["object"] == "list"
    assert requests.get(f"{sandbox.url}/v1/models", timeout=5).status_code == 401
    refused = post(sandbox, question("hi"), key="sk-wrong")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert KEY not in refused.text and "sk-wrong" not in refused.text
    missing = post(sandbox, {**question("hi"), "model": "gpt-x"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    sandbox.configure(chat_models=["a", "b"])
    assert post(sandbox, {**question("hi"), "model": "b"}).status_code == 200
    assert post(sandbox, {"model": "a", "messages": []}).status_code == 400
    with pytest.raises(SandboxError):
        sandbox.configure(chat_models="a")


def test_the_answer_is_paced_at_the_configured_rate(sandbox: Sandbox) -> None:
    sandbox.configure(chat_chunks_per_s=20.0, chat_chunk_chars=2, chat_time_scale=0.05)
    started = time.monotonic()
    with post(sandbox, question("abcdefghij", stream=True), stream=True) as r:
        arrivals = [time.monotonic() - started for line in r.iter_lines() if line.startswith(b"data: {")]
    assert 0.4 <= arrivals[-1] < 1.2  # "（第1轮）你说：abcdefghij" is 18 characters: 9 chunks at 20/s: 0.45 s
    started = time.monotonic()
    with post(sandbox, question("讲个故事", stream=True), stream=True) as r:
        _ = r.content  # 12 s × 0.05
    assert 0.5 <= time.monotonic() - started < 1.5


def test_a_stream_that_breaks_off_has_no_finish_and_no_done(sandbox: Sandbox) -> None:
    sandbox.configure(chat_break_after_chunks=3, chat_chunk_chars=1)
    data = events(post(sandbox, question("hello", stream=True)))
    assert "[DONE]" not in data and len(data) == 4  # the role chunk, then three content chunks
    assert all(json.loads(d)["choices"][0]["finish_reason"] is None for d in data)


def test_faults_answer_the_status_asked_for(sandbox: Sandbox) -> None:
    sandbox.inject_fault("chat/completions", 0, http_status=503, times=2)
    assert [post(sandbox, question("x", stream=True)).status_code for _ in range(3)] == [503, 503, 200]
    call = [c for c in sandbox.calls() if c["path"] == "/v1/chat/completions"][-1]
    assert call["json"]["messages"] == [{"role": "user", "content": "x"}]  # what was asked is recorded


def test_deterministic_answers() -> None:
    history = [{"role": "system", "content": "s"}, {"role": "user", "content": "甲"},
               {"role": "assistant", "content": "a"}, {"role": "user", "content": "我说过什么"}]
    assert answer_for(history).text == "你之前说过：「甲」。"
    assert answer_for(history[:2]).text == "（第1轮）你说：甲"
    assert answer_for([{"role": "user", "content": "讲个故事"}]).seconds == 12.0
    assert answer_for([{"role": "user", "content": "讲个故事"}]).text == STORY
    assert answer_for([{"role": "user", "content": "写一篇长文"}]).seconds == 40.0
    assert len(essay().encode()) > 3000
    timed_answer = answer_for([{"role": "user", "content": "用 20 秒回答"}])
    assert timed_answer.seconds == 20.0 and timed_answer.text == timed(20) and timed(20).count("。") == 20
