"""Issue 6: the ``bot.message`` line, secret redaction and ``/metrics``, over real HTTP against the sandbox.

The bot is ``create_app`` on a threaded werkzeug server (``delivery_support.LocalBot``) or gunicorn; it talks to
the real sandbox over HTTP with real audio, so every step in the line and every metric really ran.
"""
from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import AES_KEY, BASE_CONFIG, Server, merge
from delivery_support import SECRET, LocalBot, local_bot, openid, sections, start_sandbox
from prometheus_client.parser import text_string_to_metric_families

from bot import Router
from bot.config import Config, config_from_dict, load_config
from bot.ops.logs import setup_logging
from bot.ops.trace import Trace, add_recognition, emit, hash_openid
from bot.sandbox import Sandbox
from bot.store import open_store
from bot.testing import BotClient, messages
from bot.voice.recognizers import build_chain
from bot.wechat import WeChatAPI

SENTENCE = "打开客厅的灯"
FORWARD_SECRET = "fwd-secret-0a9b8c7d"
METRICS_TOKEN = "scrape-token-5e6f7a"

router = Router("obs")


@router.intent(r"(?P<action>打开|关闭)(?P<room>\S+?)的?灯")
def lights(ctx: Any, action: str, room: str) -> str:
    return f"已{action}{room}的灯"


@router.keyword("爆炸")
def explode(ctx: Any) -> str:
    raise RuntimeError(f"handler leaked {SECRET} and {FORWARD_SECRET} and {AES_KEY}")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = start_sandbox(0.05)
    yield sb
    sb.stop()


@pytest.fixture(autouse=True)
def _fresh(sandbox: Sandbox) -> Iterator[None]:
    sandbox.reset()
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)  # setup_logging sets the root level; later tests' caplog depends on it
    for handler in [h for h in root.handlers if getattr(h, "_wvb", False)]:
        root.removeHandler(handler)


def make_config(sandbox: Sandbox, **more: Any) -> Config:
    return config_from_dict(merge(BASE_CONFIG, merge(sections(sandbox.url, scale=1.0), more)))


def capture(config: Config) -> io.StringIO:
    stream = io.StringIO()
    setup_logging(config, stream=stream)
    return stream


def message_lines(output: str, msg_id: int) -> list[str]:
    return [line for line in output.splitlines() if "bot.message" in line and str(msg_id) in line]


def send_voice(bot: LocalBot, sandbox: Sandbox, config: Config, user: str, msg_id: int) -> str | None:
    media_id = sandbox.register_voice(SENTENCE, duration_s=0.5)["media_id"]
    return BotClient(config, url=bot.url).voice(media_id, openid=user, msg_id=msg_id).content


# -- the bot.message line ------------------------------------------------------------------------------
def test_one_text_line_per_voice_message_with_every_step(sandbox: Sandbox) -> None:
    config = make_config(sandbox)
    stream, user, msg_id = capture(config), openid(), messages.next_msg_id()
    with local_bot(config, router) as bot:
        assert send_voice(bot, sandbox, config, user, msg_id) == "已打开客厅的灯"
    lines = message_lines(stream.getvalue(), msg_id)
    assert len(lines) == 1, stream.getvalue()
    line = lines[0]
    assert f"openid={hash_openid(config, user)} " in line and user not in line
    assert re.search(r"openid=[0-9a-f]{12} ", line)
    assert " type=voice " in line and " recognizer=wechat " in line and " outcome=answered " in line
    assert " path=passive " in line and "tries=1" in line
    steps = dict(s.split(":") for s in re.search(r" steps=(\S+)", line).group(1).split(","))  # type: ignore[union-attr]
    assert {"download", "transcode", "upload", "poll", "routing"} <= set(steps), line
    assert float(steps["poll"]) >= 40  # the sandbox takes 50 ms to recognize
    assert not [ln for ln in stream.getvalue().splitlines() if f"msg_id={msg_id}" in ln and "INFO bot.message" not in ln
                and "INFO" in ln]  # no second INFO line about the message (per-try and per-step lines are DEBUG)


def test_json_format_and_openid_hashing_switched_off(sandbox: Sandbox) -> None:
    config = make_config(sandbox, logging={"format": "json", "hash_openid": False})
    stream, user, msg_id = capture(config), openid(), messages.next_msg_id()
    with local_bot(config, router) as bot:
        assert BotClient(config, url=bot.url).text("关闭卧室的灯", openid=user, msg_id=msg_id).content == "已关闭卧室的灯"
    records = [json.loads(line) for line in stream.getvalue().splitlines()]  # every line is one JSON object
    mine = [r for r in records if r["logger"] == "bot.message" and r.get("msg_id") == str(msg_id)]
    assert len(mine) == 1, records
    assert mine[0]["openid"] == user and mine[0]["type"] == "text" and mine[0]["recognizer"] == "text"
    assert mine[0]["path"] == "passive" and mine[0]["outcome"] == "answered" and "routing" in mine[0]["steps"]
    assert mine[0]["level"] == "INFO" and mine[0]["message"].startswith("message msg_id=")


def test_openid_hash_depends_on_the_deployment_salt(sandbox: Sandbox) -> None:
    a, b = make_config(sandbox), make_config(sandbox, logging={"openid_salt": "another-deployment"})
    assert hash_openid(a, "oUSER") != hash_openid(b, "oUSER") and hash_openid(a, "oUSER") == hash_openid(a, "oUSER")


# -- secrets --------------------------------------------------------------------------------------------
def test_request_logs_show_the_hashed_openid_not_the_raw_one(sandbox: Sandbox) -> None:
    user = "oRAWOPENID_abc-123456789"
    line = '127.0.0.1 - - "POST /wechat?signature=abc&timestamp=1&nonce=n&openid=%s&encrypt_type=aes HTTP/1.1" 200 -'
    config = make_config(sandbox)
    stream = capture(config)
    logging.getLogger("werkzeug").info(line, user)  # what the development server logs per request
    output = stream.getvalue()
    assert user not in output and f"openid={hash_openid(config, user)}&encrypt_type=aes" in output, output

    plain = make_config(sandbox, logging={"hash_openid": False})
    stream = capture(plain)
    logging.getLogger("werkzeug").info(line, user)
    assert f"openid={user}&encrypt_type=aes" in stream.getvalue()  # hashing switched off: as WeChat sent it


def test_no_secret_or_token_in_any_output_at_debug(sandbox: Sandbox, capfd: pytest.CaptureFixture[str]) -> None:
    config = make_config(sandbox, logging={"level": "DEBUG"}, forward={"secret": FORWARD_SECRET},
                         metrics={"enabled": True, "token": METRICS_TOKEN})
    stream = capture(config)
    sandbox.inject_fault("addvoicetorecofortext", 40001)  # the refresh path logs too
    with local_bot(config, router) as bot:
        client = BotClient(config, url=bot.url)
        assert send_voice(bot, sandbox, config, openid(), messages.next_msg_id()) == "已打开客厅的灯"
        assert client.text("爆炸").content == config.handlers.apology  # a traceback quoting the secrets
        client.voice("no-such-media")  # an error path
        logging.getLogger("bot.test").debug("url ?access_token=%s&x=1 json %s", "TOKENVALUE123",
                                            '{"access_token": "OTHERTOKEN456"}')
    output = stream.getvalue() + "".join(capfd.readouterr())
    assert "urllib3" in output and "Traceback" in output and "handler leaked ***" in output  # DEBUG really on
    issued = list(sandbox.state.tokens)
    assert len(issued) >= 2
    for secret in [SECRET, config.wechat.token, AES_KEY, FORWARD_SECRET, METRICS_TOKEN, "TOKENVALUE123",
                   "OTHERTOKEN456", *issued]:
        assert secret not in output, secret


# -- /metrics -------------------------------------------------------------------------------------------
def scrape(base: str, token: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.get(f"{base}/metrics", headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sample with these labels; the ``account`` label, when not given, is the single account's."""
    if not any(key == "account" for (n, sample), _ in samples.items() if n == name for key, _v in sample):
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)
    return samples.get((name, tuple(sorted({"account": "default", **labels}.items()))), 0.0)


def test_metrics_move_with_a_voice_message(sandbox: Sandbox) -> None:
    config = make_config(sandbox, metrics={"enabled": True})
    with local_bot(config, router) as bot:
        base = bot.url.rsplit("/", 1)[0]
        before = scrape(base)
        assert send_voice(bot, sandbox, config, openid(), messages.next_msg_id()) == "已打开客厅的灯"
        assert requests.post(bot.url, data=b"<xml/>", timeout=5).status_code == 400  # unsigned
        after = scrape(base)
    moved = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    for step in ("download", "transcode", "upload", "poll", "routing"):
        assert moved("wvb_step_seconds_count", step=step) == 1, step
    assert moved("wvb_recognizer_successes_total", recognizer="wechat") == 1
    assert moved("wvb_deliveries_total", path="passive") == 1
    assert moved("wvb_requests_total", outcome="accepted", reason="") == 1
    assert sum(v for (name, labels), v in after.items() if name == "wvb_requests_total"
               and ("outcome", "rejected") in labels) > sum(
        v for (name, labels), v in before.items() if name == "wvb_requests_total" and ("outcome", "rejected") in labels)
    assert moved("wvb_token_fetches_total", endpoint="stable_token", result="ok") == 1


def test_recognizer_failures_are_counted_by_reason(sandbox: Sandbox) -> None:
    config = make_config(sandbox, metrics={"enabled": True})
    with local_bot(config, router) as bot:
        base = bot.url.rsplit("/", 1)[0]
        before = scrape(base)
        BotClient(config, url=bot.url).voice("no-such-media")
        after = scrape(base)
    labels = {"recognizer": "wechat", "reason": "invalid_media"}
    assert value(after, "wvb_recognizer_failures_total", **labels) - value(before, "wvb_recognizer_failures_total",
                                                                            **labels) == 1


def test_line_and_metrics_say_which_recognizer_heard_it_how_long_each_tried_and_why_the_others_failed(
        sandbox: Sandbox) -> None:
    """A retired WeChat recognition and a speech service after it: the metrics (counted where the chain runs) and
    the fields a message's trace gets from its transcript (``add_recognition``), in the text and the JSON line."""
    sandbox.configure(recognition_retired=True)
    voice = {"recognizers": ["push", "wechat", "openai"], "openai": {"url": sandbox.url}}
    config = make_config(sandbox, voice=voice, metrics={"enabled": True})
    try:
        with local_bot(config, router) as bot:
            base = bot.url.rsplit("/", 1)[0]
            before = scrape(base)
            assert send_voice(bot, sandbox, config, openid(), messages.next_msg_id()) == "已打开客厅的灯"
            after = scrape(base)
        chain = build_chain(config, WeChatAPI(config.wechat, open_store("memory://")))
        clip = sandbox.register_voice(SENTENCE, duration_s=0.5)
        transcript = chain({"MediaId": clip["media_id"], "Format": "amr", "Recognition": ""}, "6194535080005")
    finally:
        sandbox.configure(recognition_retired=False)
    moved = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert moved("wvb_recognizer_successes_total", recognizer="openai") == 1
    assert moved("wvb_recognizer_failures_total", recognizer="wechat", reason="empty_final") == 1
    assert moved("wvb_recognizer_failures_total", recognizer="push", reason="no_push_recognition") == 1
    for recognizer, outcome in (("push", "no_push_recognition"), ("wechat", "empty_final"), ("openai", "ok")):
        assert moved("wvb_recognizer_seconds_count", recognizer=recognizer, outcome=outcome) == 1, recognizer
    assert moved("wvb_recognizer_seconds_sum", recognizer="wechat", outcome="empty_final") >= 0.2  # 1st poll at 0.2 s
    assert [(name, outcome) for name, outcome, _ in transcript.tries] == [
        ("push", "no_push_recognition"), ("wechat", "empty_final"), ("openai", "ok")]
    for fmt in ("text", "json"):
        logged = make_config(sandbox, logging={"format": fmt})
        stream = capture(logged)
        trace = Trace("6194535080005", type="voice", outcome="answered")
        add_recognition(trace, transcript)
        emit(trace, "passive", tries=1)
        line = message_lines(stream.getvalue(), 6194535080005)[0]
        if fmt == "text":
            assert " recognizer=openai " in line and "recognition_error" not in line
            assert re.search(r" recognizers=push:no_push_recognition:[\d.]+,wechat:empty_final:[\d.]+,openai:ok:[\d.]+ ",
                             line), line
        else:
            record = json.loads(line)
            assert record["recognizer"] == "openai"
            assert [(t["name"], t["outcome"]) for t in record["recognizers"]] == [
                ("push", "no_push_recognition"), ("wechat", "empty_final"), ("openai", "ok")]
            assert record["recognizers"][1]["ms"] >= 200  # its first poll comes after 0.2 s
        logging.getLogger().handlers[:] = [h for h in logging.getLogger().handlers if not getattr(h, "_wvb", False)]


def test_metrics_disabled_is_404_and_the_token_is_required(sandbox: Sandbox) -> None:
    with local_bot(make_config(sandbox), router) as bot:
        assert requests.get(bot.url.rsplit("/", 1)[0] + "/metrics", timeout=5).status_code == 404
    with local_bot(make_config(sandbox, metrics={"enabled": True, "token": METRICS_TOKEN}), router) as bot:
        url = bot.url.rsplit("/", 1)[0] + "/metrics"
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
        ok = requests.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5)
        assert ok.status_code == 200 and "wvb_requests_total" in ok.text


def test_gunicorn_workers_share_counters_in_multiprocess_mode(write_config: Any, gunicorn_factory: Any,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(prom_dir))  # inherited by gunicorn, not used here
    path = write_config(metrics={"enabled": True})
    server: Server = gunicorn_factory(path, workers=2, threads=2)
    client = BotClient(load_config(path), url=server.url)
    for i in range(6):
        assert client.text(f"打开{i}号房间的灯").status == 200
    totals = [value(scrape(server.base), "wvb_requests_total", outcome="accepted", reason="") for _ in range(4)]
    assert totals == [6.0] * 4  # whichever worker answers the scrape, it sums both
    assert len(list(prom_dir.glob("counter_*.db"))) >= 1
