"""An OpenAI-compatible chat service in the sandbox (``POST /v1/chat/completions``, ``GET /v1/models``), so
``make run`` with ``handlers.llm`` answers offline and tests see every kind of answer and failure.

Answers are deterministic, chosen by the last user message:

- "讲个故事" / "story": a story streamed over 12 s; "写一篇长文" / "essay": a long markdown essay (more than one
  WeChat message) over 40 s; "用 N 秒回答" / "take N s": numbered sentences over N s ("这是第 3 句，…第 3 秒…");
  these durations are multiplied by ``chat_time_scale`` (tests run them scaled down);
- "markdown" / "格式": a markdown answer with headings, lists, code, a table and links;
- "你好" / "hello": a greeting; "我说过什么" / "what did i say": the user's earlier messages, from the history sent;
- anything else: an echo with the turn number (the user messages sent, so memory shows): "（第 3 轮）你说：…".

Settings (``state.SETTINGS_DEFAULTS``): ``chat_latency_s`` before the answer starts, ``chat_chunks_per_s`` and
``chat_chunk_chars`` for the streaming rate, ``chat_api_key`` (non-empty: a request without that bearer key is
a 401), ``chat_models`` (what is listed; another model is a 404), ``chat_break_after_chunks`` (a stream that
stops after that many chunks without finishing). Faults are injected as for every endpoint (endpoint
``chat/completions`` or ``models``, with the HTTP status to answer). Streams are real server-sent events as
OpenAI sends them: ``data: {chunk}`` events, a last chunk with ``finish_reason``, a usage chunk when
``stream_options.include_usage`` asks for it, and ``data: [DONE]``.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Response, jsonify, request

from bot.sandbox.account import SandboxAccount
from bot.sandbox.endpoint import Endpoints

_ids = itertools.count(1)

STORY = ("从前有一座山，山里有一座庙。庙里住着一个老和尚和一个小和尚。每天早上，小和尚都去山下挑水。"
         "有一天，他在河边遇见了一只会说话的乌龟。乌龟说，它在河里住了三百年。小和尚问它，三百年里最难忘的是什么。"
         "乌龟想了想，说是一个下雪的夜晚。那天晚上，山上的灯火一直亮到天明。小和尚把这件事告诉了老和尚。"
         "老和尚笑着说，那一夜是他刚来庙里的时候。从此以后，小和尚每次挑水都和乌龟聊上几句。故事讲完了。")
ESSAY_SECTIONS = ("为什么要读书", "怎样读得更多", "读完以后做什么", "结语")
MARKDOWN = ("# Markdown 示例\n\n这是**加粗**、*斜体*和`代码`。更多见[文档](https://example.com/docs)。\n\n"
            "## 列表\n\n- 第一项\n- 第二项\n  - 子项\n1. 步骤一\n2. 步骤二\n\n"
            "```python\nprint(\"**不是加粗**\")\n```\n\n"
            "| 名称 | 价格 |\n|---|---:|\n| 苹果 | 3 元 |\n| 香蕉 | 2 元 |\n\n> 引用的一句话。\n")
TIMED = re.compile(r"用\s*(\d+(?:\.\d+)?)\s*秒|(?i:take\s+(\d+(?:\.\d+)?)\s*s\b)")


@dataclass(frozen=True)
class Written:
    """What the model "writes": the text, and over how many seconds (None: at the streaming rate)."""

    text: str
    seconds: float | None = None


def essay() -> str:
    """Four sections of ten sentences: over 3000 UTF-8 bytes, more than one WeChat text message."""
    parts = []
    for i, title in enumerate(ESSAY_SECTIONS, 1):
        sentences = "".join(f"关于“{title}”，这是第{i}部分的第{k}句话，它讲的是一个完整的小道理。" for k in range(1, 11))
        parts.append(f"## {i}. {title}\n\n{sentences}\n")
    return "# 一篇长文\n\n" + "\n".join(parts)


def timed(seconds: float) -> str:
    """One sentence per second: sentence k is complete at about second k."""
    n = max(1, math.ceil(seconds))
    return "".join(f"这是第{k}句，写于第{k}秒。" for k in range(1, n + 1))


def answer_for(messages: list[dict[str, Any]]) -> Written:
    """The deterministic answer to the last user message, given the whole conversation sent."""
    users = [c if isinstance(c, str) else json.dumps(c, ensure_ascii=False)
             for c in (m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user")]
    question, turn = (users[-1] if users else ""), len(users)
    lowered = question.lower()
    found = TIMED.search(question)
    if found:
        seconds = float(found.group(1) or found.group(2))
        return Written(timed(seconds), seconds)
    if "讲个故事" in question or "story" in lowered:
        return Written(STORY, 12.0)
    if "写一篇长文" in question or "essay" in lowered:
        return Written(essay(), 40.0)
    if "markdown" in lowered or "格式" in question:
        return Written(MARKDOWN)
    if "我说过什么" in question or "what did i say" in lowered:
        earlier = users[:-1]
        return Written("你之前说过：" + "、".join(f"「{u}」" for u in earlier) + "。" if earlier else "你还没说过别的。")
    if "你好" in question or "hello" in lowered:
        return Written(f"你好！我是沙盒里的语言模型（第{turn}轮）。可以试试：讲个故事、写一篇长文、markdown 示例、我说过什么。")
    return Written(f"（第{turn}轮）你说：{question}")


def chunks(answer: Written, per_second: float, chunk_chars: int, scale: float) -> Iterator[tuple[str, float]]:
    """(piece, seconds to wait before it): a timed answer spread evenly over its seconds × ``scale``, others in
    pieces of ``chunk_chars`` at ``per_second`` (0: as fast as possible)."""
    text = answer.text
    if answer.seconds is not None:
        wanted = round(answer.seconds * per_second) if per_second > 0 else len(text) // max(1, chunk_chars)
        size = math.ceil(len(text) / min(len(text), max(1, wanted)))
        interval = answer.seconds * scale / math.ceil(len(text) / size)
    else:
        size, interval = max(1, chunk_chars), (1.0 / per_second if per_second > 0 else 0.0)
    for start in range(0, len(text), size):
        yield text[start:start + size], interval


def _error(status: int, message: str, kind: str, code: str | None = None) -> Response:
    resp = jsonify(error={"message": message, "type": kind, "param": None, "code": code})
    resp.status_code = status
    return resp


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def register(endpoints: Endpoints, sandbox: SandboxAccount) -> None:
    """Add the chat endpoints to the sandbox app, faultable and logged like every endpoint."""
    state = sandbox.state

    def refused() -> Response | None:
        key = str(state.setting("chat_api_key"))
        if key and request.headers.get("Authorization", "") != f"Bearer {key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return None

    @endpoints.api("/v1/models", ("GET",), needs_token=False)
    def models() -> Any:
        problem = refused()
        if problem is not None:
            return problem
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "sandbox"}
                                           for m in state.setting("chat_models")]}

    @endpoints.api("/v1/chat/completions", ("POST",), needs_token=False)
    def chat_completions() -> Any:
        problem = refused()
        if problem is not None:
            return problem
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", "invalid_request_error")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array", "invalid_request_error")
        if model not in state.setting("chat_models"):
            return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                          "invalid_request_error", "model_not_found")
        answer = answer_for(messages)
        finish = "stop"
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(limit, int) and 0 < limit < len(answer.text):  # a character stands for a token here
            answer, finish = Written(answer.text[:limit], answer.seconds), "length"
        latency = float(state.setting("chat_latency_s"))
        if latency > 0:
            time.sleep(latency)
        pieces = chunks(answer, float(state.setting("chat_chunks_per_s")), int(state.setting("chat_chunk_chars")),
                        float(state.setting("chat_time_scale")))
        ident, created = f"chatcmpl-sbx{next(_ids)}", int(time.time())
        if not body.get("stream"):
            for _, wait in pieces:  # a model answering in one piece still takes its time to write it
                time.sleep(wait)
            return {"id": ident, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                                 "logprobs": None, "finish_reason": finish}],
                    "usage": usage(messages, answer.text)}
        usage_asked = isinstance(body.get("stream_options"), dict) and bool(body["stream_options"].get("include_usage"))
        break_after = int(state.setting("chat_break_after_chunks"))

        def events() -> Iterator[str]:
            base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                    "system_fingerprint": None}

            def chunk(delta: dict[str, Any], reason: str | None = None) -> str:
                return _sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": reason}]})

            yield chunk({"role": "assistant", "content": ""})
            for n, (piece, wait) in enumerate(pieces, 1):
                if wait > 0:
                    time.sleep(wait)
                yield chunk({"content": piece})
                if break_after and n >= break_after:
                    return  # the stream stops here: no finish_reason, no [DONE]
            yield chunk({}, finish)
            if usage_asked:
                yield _sse({**base, "choices": [], "usage": usage(messages, answer.text)})
            yield "data: [DONE]\n\n"

        return Response(events(), content_type="text/event-stream; charset=utf-8",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def usage(messages: list[dict[str, Any]], text: str) -> dict[str, int]:
    """Token counts as OpenAI reports them (a character stands for a token here)."""
    prompt = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
    return {"prompt_tokens": prompt, "completion_tokens": len(text), "total_tokens": prompt + len(text)}
