"""Events have no MsgId: their id is FromUserName + CreateTime, and that is the raw openid (issue 12, item 5).

With ``[logging] hash_openid`` on (the default), no log line may carry it: ``bot.message`` (text and JSON) shows
``<hashed openid>:<CreateTime>``, the same hash as its ``openid`` field, and so do delivery's own lines.
Deduplication is unchanged: WeChat's retry of an event is still answered once.
"""
from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from delivery_support import local_bot

from bot import Router
from bot.config import Config
from bot.ops.logs import setup_logging
from bot.ops.trace import hash_openid
from bot.testing import Envelope, messages, test_config

OPENID = "oREALUSER_abcdefghijk1234567"  # 28 characters, like WeChat's


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)
    for handler in [h for h in root.handlers if getattr(h, "_wvb", False)]:
        root.removeHandler(handler)


def welcome_router(calls: list[str]) -> Router:
    router = Router("welcome")

    @router.event("subscribe")
    def welcome(ctx: Any) -> str:
        calls.append(ctx.msg_id)
        return "欢迎"
    return router


def post_twice(config: Config, router: Router) -> tuple[int, list[tuple[int, str]]]:
    """One subscribe event, posted twice with the same body (WeChat's retry); the CreateTime and the answers.
    The event was made 6 s before: WeChat's retry comes 5 s after its first try, so a retry is never younger
    (a copy younger than 2.5 s reads nothing before its handler, which may then run twice: README "Fast
    handlers"); so the first post here is a late first try, and both read the record first. (Not
    ``messages.next_create_time()``: it runs ahead of the clock when a process sends several events a second;
    each test here has a bot of its own, with a memory store of its own.)"""
    import requests
    create_time = int(time.time()) - 6
    query, body = Envelope.for_config(config, "plaintext").wrap(messages.event("subscribe", openid=OPENID,
                                                                               create_time=create_time))
    answers = []
    with local_bot(config, router) as bot:
        for _ in range(2):
            r = requests.post(bot.url, params=query, data=body, timeout=10)
            answers.append((r.status_code, r.text))
    return create_time, answers


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_events_id_in_the_logs_does_not_reveal_the_openid(fmt: str) -> None:
    config = test_config(encrypted=False, logging={"format": fmt, "level": "DEBUG"})
    stream = io.StringIO()
    setup_logging(config, stream=stream)
    calls: list[str] = []
    create_time, answers = post_twice(config, welcome_router(calls))
    output = stream.getvalue()
    assert OPENID not in output, [line for line in output.splitlines() if OPENID in line]
    expected = f"{hash_openid(config, OPENID)}:{create_time}"
    assert calls == [expected]  # ctx.msg_id too (handlers log it); and the retry did not run the handler again
    assert [status for status, _ in answers] == [200, 200] and "欢迎" in answers[0][1]
    lines = [line for line in output.splitlines() if "bot.message" in line]
    assert len(lines) == 1
    if fmt == "json":
        record = json.loads(lines[0])
        assert record["msg_id"] == expected and record["openid"] == hash_openid(config, OPENID)
    else:
        assert f"msg_id={expected} " in lines[0]
    assert any(f"msg_id={expected}" in line for line in output.splitlines() if "bot.delivery" in line)


def test_without_hashing_the_id_is_the_dedupe_key_as_before() -> None:
    config = test_config(encrypted=False, logging={"hash_openid": False})
    stream = io.StringIO()
    setup_logging(config, stream=stream)
    calls: list[str] = []
    create_time, _ = post_twice(config, welcome_router(calls))
    assert calls == [f"{OPENID}:{create_time}"]
    assert f"msg_id={OPENID}:{create_time}" in stream.getvalue()


def test_messages_keep_their_msg_id() -> None:
    config = test_config(encrypted=False)
    stream = io.StringIO()
    setup_logging(config, stream=stream)
    router = Router()
    router.text(lambda ctx: ctx.msg_id)
    import requests
    query, body = Envelope.for_config(config, "plaintext").wrap(messages.text("hi", openid=OPENID, msg_id=6194535080005))
    with local_bot(config, router) as bot:
        assert "6194535080005" in requests.post(bot.url, params=query, data=body, timeout=10).text
    assert "msg_id=6194535080005 " in stream.getvalue() and OPENID not in stream.getvalue()
