"""Exactly one answer per message, in one process: every recognition latency × every reply mode.

The bot runs on a real socket (werkzeug, in this process) against the real sandbox over HTTP; the
``WeChatRetryClient`` drops each try and retries like WeChat. WeChat's clock runs × 0.2 (tries of 1 s, a
0.8 s budget): at × 0.1 a result and the end of a try's budget are ~0.1 s apart, less than the scheduling
jitter of a loaded 2-core machine. Latencies 0.5/4/7/12/20 s become 0.1/0.8/1.4/2.4/4.0 s: ready in the first
try, at the edge of the first budget, in the second try, in the third, and after the last.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis_support
from delivery_support import (
    ANSWER,
    NOTICE,
    SENTENCE,
    LogRecorder,
    bot_config,
    local_bot,
    openid,
    problems,
    recording_logs,
    run_all,
    start_sandbox,
    wait_for,
)
from redis_support import redis_target  # noqa: F401 - fixture

from bot.config import ConfigError
from bot.core.router import Router
from bot.delivery.customer_service import cs_payload
from bot.delivery.record import Record, State
from bot.runtime import build_webhook
from bot.testing import BotClient, Seen, WeChatRetryClient, messages

SCALE = 0.2
WAIT_S = 5.0 * SCALE
LATENCIES = (0.1, 0.8, 1.4, 2.4, 4.0)
MODES = ("auto", "customer_service", "passive")
CLIP_S = 0.5  # short clips: the transcode is real but cheap
STAGGER_S = 0.05  # apart: 15 transcodes at one instant would measure the GIL, not delivery
START_ORDER = (2.4, 1.4, 0.1, 0.8, 4.0)  # the tightest timelines start first, on a quiet process
# The matrix runs 15 bots at once beside the other test processes: its clock is WeChat's × 0.3 (SCALE × 1.5), its
# latencies stretched alike, so each timeline keeps its shape and a busy machine's jitter has 0.3 s, not 0.2 s.
STRETCH = 1.5

# (mode, latency) -> the tries WeChat sees on an idle machine, for the record (``problems`` judges by the rules,
# so that a loaded machine answering a try later is not a failure): None where the result lands at the edge.
QUIET_TIMELINE: dict[tuple[str, float], list[str] | None] = {
    ("auto", 0.1): ["reply"], ("auto", 0.8): None, ("auto", 1.4): ["timeout", "reply"],
    ("auto", 2.4): ["timeout", "timeout", "reply"], ("auto", 4.0): ["timeout", "timeout", "success"],
    ("customer_service", 0.1): ["reply"], ("customer_service", 0.8): None,
    ("customer_service", 1.4): ["success"], ("customer_service", 2.4): ["success"],
    ("customer_service", 4.0): ["success"],
    ("passive", 0.1): ["reply"], ("passive", 0.8): None, ("passive", 1.4): ["timeout", "reply"],
    ("passive", 2.4): ["timeout", "timeout", "reply"], ("passive", 4.0): ["timeout", "timeout", "reply"],
}


@dataclass
class Scenario:
    mode: str
    latency: float
    msg_id: int
    seen: Seen


@pytest.fixture(scope="module")
def logs() -> Iterator[LogRecorder]:
    with recording_logs() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def matrix(logs: LogRecorder) -> dict[tuple[str, float], Scenario]:
    """All 15 scenarios at once (a sandbox per latency, a bot per scenario): ~4 s instead of ~40 s."""
    with ExitStack() as stack:
        calls = []
        for latency in START_ORDER:
            sandbox = start_sandbox(latency * STRETCH)
            stack.callback(sandbox.stop)
            media_id = sandbox.register_voice(SENTENCE, duration_s=CLIP_S)["media_id"]
            for mode in MODES:
                config = bot_config(sandbox.url, mode=mode, scale=SCALE * STRETCH)
                bot = stack.enter_context(local_bot(config))
                client = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=WAIT_S * STRETCH, settle_s=0.4,
                                           cs_wait_s=0.5 if mode == "passive" else 5.0 * STRETCH)

                def call(mode: str = mode, latency: float = latency, client: WeChatRetryClient = client,
                         media_id: str = media_id, start: float = STAGGER_S * len(calls)) -> Scenario:
                    time.sleep(start)
                    msg_id = messages.next_msg_id()
                    return Scenario(mode, latency, msg_id,
                                    client.voice(media_id, openid=openid(mode[:4]), msg_id=msg_id))
                calls.append(call)
        return {(s.mode, s.latency): s for s in run_all(calls)}


@pytest.mark.parametrize("latency", LATENCIES)
@pytest.mark.parametrize("mode", MODES)
def test_exactly_one_answer(matrix: dict[tuple[str, float], Scenario], logs: LogRecorder, mode: str,
                            latency: float) -> None:
    s = matrix[mode, latency]
    story = "\n".join([repr(s.seen), *logs.lines(str(s.msg_id))])
    assert problems(s.seen, mode, latency * STRETCH, SCALE * STRETCH) == [], story
    undeliverable = [line for line in logs.lines(f"msg_id={s.msg_id} ") if "path=undeliverable" in line]
    assert undeliverable == [], story
    if mode == "passive" and s.seen.answers == [NOTICE]:  # missed every try: the notice, and the answer is kept
        assert s.seen.statuses == ["timeout", "timeout", "reply"], story
        assert wait_for(lambda: logs.lines(f"delivery msg_id={s.msg_id} answer kept for pickup"), 3.0), story
    if latency == 4.0 and mode != "customer_service":  # past every try: certain even on a busy machine
        assert s.seen.statuses == QUIET_TIMELINE[mode, latency], story


def _sends(sandbox: Any, count: int) -> list[int]:
    """The errcodes of message/custom/send calls to a user, once there are ``count`` (or after 5 s), and a moment
    more. Not the bot's probes (a send to nobody, which asks whether the account may use the API at all)."""
    errcodes = lambda: [c["errcode"] for c in sandbox.calls()  # noqa: E731
                        if c["api"] == "send" and (c["json"] or {}).get("touser")]
    wait_for(lambda: len(errcodes()) >= count, 5.0)
    time.sleep(0.3)  # room for a retry loop to show itself
    return errcodes()


@pytest.mark.parametrize("errcode", [45015, 45047])
def test_customer_service_refusal_keeps_the_answer_for_pickup(errcode: int) -> None:
    """45015 (window passed) / 45047 (quota used up) refuse this message, not the account: not retried, the
    answer is kept and shown with the user's next message, before that message's own answer."""
    with start_sandbox(0.7) as sandbox, recording_logs() as logs:
        sandbox.inject_fault("message/custom/send", errcode, times=5)
        config = bot_config(sandbox.url, mode="customer_service")
        with local_bot(config) as bot:
            msg_id, user = messages.next_msg_id(), openid()
            seen = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=0.5, cs_wait_s=0).voice(
                sandbox.register_voice(SENTENCE)["media_id"], openid=user, msg_id=msg_id)
            sends = _sends(sandbox, 1)
            assert wait_for(lambda: logs.lines(f"delivery msg_id={msg_id} answer kept for pickup"), 3.0)
            later = BotClient(config, url=bot.url, openid=user).text("你好")
    # success at the budget (a busy machine may answer it a try later: still success, never the answer)
    assert seen.statuses[-1] == "success" and "reply" not in seen.statuses and seen.answers == [], seen
    assert sends == [errcode]
    lines = logs.lines(f"delivery msg_id={msg_id} customer-service API refused errcode={errcode}")
    assert len(lines) == 1 and "kept for pickup" in lines[0], logs.messages
    assert later.content == f"{ANSWER}\n\n你好", later  # the kept answer first, then the new one
    picked = [line for line in logs.lines(f"msg_id={msg_id} ") if "path=pickup" in line]
    assert len(picked) == 1 and "waited_s=" in picked[0]


def test_busy_customer_service_is_retried_a_bounded_number_of_times() -> None:
    with start_sandbox(0.7) as sandbox:
        sandbox.inject_fault("message/custom/send", -1, times=1)
        # a verified account, said so: no probe of the API before the send, so the fault hits the send
        config = bot_config(sandbox.url, mode="customer_service", reply={"customer_service": True})
        with local_bot(config) as bot:
            bot.webhook.delivery.cs.backoff_s = 0.05
            seen = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=0.5, cs_wait_s=5.0, settle_s=0.2).voice(
                sandbox.register_voice(SENTENCE)["media_id"], openid=openid())
            sends = _sends(sandbox, 2)
    assert seen.answers == [ANSWER] and sends == [-1, 0]


def test_a_dead_workers_job_is_taken_over() -> None:
    """A job left ``running`` by a worker that died (no heartbeat any more) runs again, answered once."""
    with start_sandbox(0.1) as sandbox, recording_logs() as logs:
        config = bot_config(sandbox.url, scale=SCALE)
        with local_bot(config) as bot:
            msg_id = messages.next_msg_id()
            store = bot.webhook.delivery.store
            dead = "thread@gone:1:dead00#run"  # no alive: key for this process: it died
            store.add(f"dl:m:{msg_id}", Record(State.RUNNING, created=time.time() - 1, owner=dead).dump(), ttl=60)
            seen = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=WAIT_S, settle_s=0.2).voice(
                sandbox.register_voice(SENTENCE)["media_id"], openid=openid(), msg_id=msg_id)
    assert seen.answers == [ANSWER] and seen.statuses == ["reply"]
    assert len(logs.lines(f"delivery msg_id={msg_id} taking the job over")) == 1


@pytest.fixture(params=redis_support.BACKENDS)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    return redis_support.backend_target(request.param, request, tmp_path)


def _slow_counting_router(delay_s: float) -> tuple[Router, list[str]]:
    router, calls = Router("slow"), []

    @router.fallback
    def answer(ctx: Any) -> str:
        calls.append(ctx.msg_id)
        time.sleep(delay_s)
        return f"echo {ctx.text}"
    return router, calls


@pytest.mark.parametrize("fast_path_s", [0.0, 0.5])
@pytest.mark.parametrize("mode,delay_s,budget_s", [("auto", 0.0, 0.45), ("customer_service", 0.2, 0.1)])
def test_concurrent_tries_run_one_job_and_answer_once(store_target: tuple[str, str], mode: str, delay_s: float,
                                                      budget_s: float, fast_path_s: float) -> None:
    """8 copies of one push at once, on each store backend: one answer (passive, or one customer-service
    message). Copies that arrive after a passive answer get the same reply: WeChat only retries a try whose
    answer it did not receive, so the user still reads it once. Claim-first (``fast_path_s = 0``): one job.
    With the fast path, copies overlapping within ``T`` may each run the handler (README "Fast handlers"):
    still one answer (in customer_service mode the handler outlives ``T`` = budget/2: one watchdog claims)."""
    url, prefix = store_target
    router, calls = _slow_counting_router(delay_s)
    with start_sandbox() as sandbox:
        config = bot_config(sandbox.url, mode=mode, store=url, prefix=prefix,
                            reply={"budget_s": budget_s, "fast_path_s": fast_path_s})
        client = BotClient(build_webhook(config, router))
        user = openid()
        query, body = client.envelope.wrap(messages.text("hi", openid=user))
        barrier = threading.Barrier(8)

        def post() -> tuple[int, str]:
            barrier.wait()
            return client.post_raw(query, body)
        answers = [client.envelope.unwrap(*r) for r in run_all([post] * 8)]
        if mode == "customer_service":
            wait_for(lambda: [m for m in sandbox.custom_messages() if m["touser"] == user], 2.0)
        time.sleep(0.2)
        sent = [m for m in sandbox.custom_messages() if m["touser"] == user]
    assert len(calls) == 1 if fast_path_s == 0 else 1 <= len(calls) <= 8
    assert all(a.status == 200 for a in answers)
    if mode == "auto":
        assert {a.content for a in answers} == {"echo hi"} and sent == []
    else:
        assert all(a.is_success for a in answers)
        assert [m["text"]["content"] for m in sent] == ["echo hi"]


def test_a_slow_text_handler_in_customer_service_mode_answers_success_at_the_budget() -> None:
    """customer_service mode: the first try answers success at its budget and the answer follows by customer
    service. A text job is not run in the request thread there: a handler that outlives WeChat's wait would keep
    the try until WeChat gave up (a timeout, a second try, an error shown), not answered at the budget."""
    router, calls = _slow_counting_router(WAIT_S * 1.2)  # past WeChat's wait for one try
    with start_sandbox() as sandbox:
        config = bot_config(sandbox.url, mode="customer_service", scale=SCALE, reply={"customer_service": True})
        with local_bot(config, router) as bot:
            user = openid()
            seen = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=WAIT_S, cs_wait_s=5.0,
                                     settle_s=0.3).text("hi", openid=user)
    assert seen.statuses == ["success"], seen
    assert seen.answers == ["echo hi"] and len(seen.customer_service) == 1 and len(calls) == 1, seen


@pytest.mark.parametrize("fast_path_s,scale,expected", [
    (0.5, 1.0, ["INSERT"]), (0.5, SCALE, ["SELECT", "INSERT"]), (0.0, 1.0, ["INSERT", "UPDATE"])])
def test_a_text_answered_at_once_costs_one_sqlite_write(tmp_path: Path, fast_path_s: float, scale: float,
                                                        expected: list[str]) -> None:
    """The fast path (the default), on WeChat's real timing: a message made this second is a first try, so
    nothing is read; one write, the record added already delivered unless the user has answers kept, one
    INSERT. With WeChat's timeout scaled down (1.25 s) a retry could be as young as a first try: the record and
    the pickup index are read first, one SELECT. Claim-first (``fast_path_s = 0``): the claim (which also tells
    whether the user has answers kept) and the move to delivered. Each its own transaction in one statement, so
    none holds the write lock while its thread waits for the GIL (a transaction of several statements did, and
    every writer of every worker waited behind it)."""
    with start_sandbox() as sandbox:
        config = bot_config(sandbox.url, store=f"sqlite:///{tmp_path / 'state.db'}", scale=scale,
                            reply={"fast_path_s": fast_path_s})
        router = Router("echo")
        router.fallback(lambda ctx: f"echo {ctx.text}")
        webhook = build_webhook(config, router)
        client = BotClient(webhook)
        assert client.text("warm-up").content == "echo warm-up"  # connections, heartbeat, account kind
        store = webhook.delivery.store  # type: ignore[union-attr]
        statements: list[str] = []
        conn_of, request_thread = store._conn, threading.current_thread()  # type: ignore[attr-defined]

        class Counting:
            def __init__(self, conn: Any) -> None:
                self.conn = conn

            def execute(self, sql: str, params: tuple = ()) -> Any:
                if threading.current_thread() is request_thread:  # not the heartbeat's renewals
                    statements.append(sql.split(" ", 1)[0])
                return self.conn.execute(sql, params)

            @property
            def total_changes(self) -> int:  # read without a statement
                return self.conn.total_changes
        store._conn = lambda: Counting(conn_of())  # type: ignore[attr-defined]
        assert client.text("hello").content == "echo hello"
    assert statements == expected, statements


def test_store_outage_answers_without_dedupe() -> None:
    """A store that cannot be reached must not turn into a 500: the request answers by itself."""
    with recording_logs() as logs:
        config = bot_config("http://127.0.0.1:9", store="redis://127.0.0.1:9/0")
        reply = BotClient(build_webhook(config)).text(SENTENCE)
    assert reply.content == ANSWER
    assert logs.lines("answering in this request without dedupe")


def test_customer_service_payloads() -> None:
    """Late text, image and voice go out as they are (whatever reply object the handler returned); other
    reply types are not guessed at."""
    from wechatpy import parse_message
    from wechatpy.replies import ArticlesReply, ImageReply, TextReply, VoiceReply

    from bot.core.context import Context
    from bot.core.pipeline import as_answer
    ctx = Context(message=parse_message(messages.text("x", openid="oA")))

    def payload(reply: object) -> object:
        answer = as_answer(reply, ctx)  # type: ignore[arg-type]
        return cs_payload(answer.parts[0] if answer.parts else None)
    assert payload(None) is None and payload("") is None and payload("  ") is None
    assert payload(TextReply(message=ctx.message, content="好")) == {"msgtype": "text", "content": "好"}
    assert payload(ctx.reply_text("a]]>b")) == {"msgtype": "text", "content": "a]]>b"}
    assert payload(ImageReply(message=ctx.message, media_id="M1")) == {"msgtype": "image", "media_id": "M1"}
    assert payload(VoiceReply(message=ctx.message, media_id="V1")) == {"msgtype": "voice", "media_id": "V1"}
    assert payload(ArticlesReply(message=ctx.message, articles=[])) == {"msgtype": "news"}


@pytest.mark.parametrize("reply,storage,error", [
    ({"budget_s": 5.0}, "memory://", "[reply] budget_s"),
    ({"executor": "rq"}, "memory://", "[reply] executor"),
    ({"threads": 0}, "memory://", "[reply] threads"),
])
def test_impossible_reply_settings_stop_start_up(reply: dict[str, Any], storage: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]")):
        build_webhook(bot_config("http://127.0.0.1:9", store=storage, reply=reply))  # refused while loading
