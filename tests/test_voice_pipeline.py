"""The voice pipeline end to end: a signed, encrypted voice push → the recognizer chain → the reply.

Every test posts through ``BotClient`` to a webhook built by ``build_webhook`` (in-process, or over HTTP to
gunicorn), and the bot talks to the real sandbox over HTTP with real audio: AMR clips the sandbox encodes,
and the committed Ogg Speex / AMR-WB fixtures. Clocks are scaled down (a 1.5 s window, 0.15 s latency);
one test runs at WeChat's real scale (10 s window, result at 8 s). WeChat's ``is_end``, the fallback recognizer and
the share of the message's time it gets are in test_voice_fallback.py.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server
from voice_support import AUDIO, XML, parse_source, source_router

from bot.config import ConfigError, load_config
from bot.core.loading import load_router
from bot.core.router import Router, combine
from bot.runtime import build_webhook
from bot.sandbox import Sandbox
from bot.testing import BotClient, messages, test_config

APPID, SECRET = "wxvoicepipeline01", "pipeline-secret-7f3a9c"
LATENCY, WINDOW = 0.15, 1.5
FAST = {"window_s": WINDOW, "poll_initial_s": 0.05, "poll_max_s": 0.1}
SORRY = "没听清，再说一次？"
LIGHTS = "打开客厅的灯"

# The committed fixtures: (file, Format in the push, the sentence their tone will stand for).
AUDIO_FIXTURES = {
    "speex_nb": ("tone_725hz_2s_nb.spx", "speex", "打开厨房的灯"),
    "speex_wb": ("tone_1525hz_2s_wb.spx", "speex", "关闭书房的灯"),
    "amr_wb": ("tone_1025hz_2s.awb", "amr", "打开卫生间的灯"),
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(appid=APPID, appsecret=SECRET, recognition_latency_s=LATENCY, window_s=WINDOW) as sb:
        # Bind the fixtures' tones before any register_voice() hands those tones to other sentences.
        sb.fixture_media = {  # type: ignore[attr-defined]
            key: sb.add_media((AUDIO / name).read_bytes(), filename=name, text=text)
            for key, (name, _, text) in AUDIO_FIXTURES.items()}
        yield sb


@pytest.fixture(autouse=True)
def clean(sandbox: Sandbox) -> Iterator[None]:
    sandbox.reset(settings=True)
    sandbox.configure(recognition_latency_s=LATENCY, window_s=WINDOW, token_expires_in=7200, token_grace_s=0.0)
    yield


def make_config(sandbox: Sandbox, *, wechat: dict[str, Any] | None = None, **voice: Any) -> Any:
    return test_config(wechat={"appid": APPID, "appsecret": SECRET, "api_base_url": sandbox.url, **(wechat or {})},
                       voice={**FAST, "not_understood": SORRY, **voice})


def bot(sandbox: Sandbox, router: Router | None = None, **voice: Any) -> BotClient:
    return BotClient(build_webhook(make_config(sandbox, **voice), router or source_router))


def lights_router() -> Router:
    return combine([load_router("handlers.lights:router"), source_router])


def apis(sandbox: Sandbox) -> list[str]:
    return [c["api"] for c in sandbox.calls()]


def calls_to(sandbox: Sandbox, api: str) -> list[dict[str, Any]]:
    return [c for c in sandbox.calls() if c["api"] == api]


def failure_lines(caplog: pytest.LogCaptureFixture, msg_id: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "bot.voice" and f"msg_id={msg_id}" in r.getMessage() and "failed reason=" in r.getMessage()]


def sample(name: str, **fields: str) -> str:
    """A committed XML sample with some fields replaced (the element keeps the sample's own layout)."""
    xml = (XML / name).read_text(encoding="utf-8")
    for tag, value in fields.items():
        xml, n = re.subn(rf"<{tag}>.*?</{tag}>", f"<{tag}><![CDATA[{value}]]></{tag}>" if tag != "MsgId"
                         else f"<{tag}>{value}</{tag}>", xml, flags=re.S)
        assert n == 1, f"{tag} not in {name}"
    return xml


# -- push recognition ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, text", [("voice_with_recognition_official_legacy_doc.xml", "腾讯微信团队"),
                                        ("voice_with_recognition_werobot.xml", "Meow~")])
def test_push_recognition_answers_without_calling_wechat(sandbox: Sandbox, name: str, text: str) -> None:
    client = bot(sandbox)
    reply = client.send(sample(name, MsgId=str(messages.next_msg_id())))
    assert parse_source(reply.content) == ("push", text)
    assert sandbox.calls() == []  # no token, no download, no recognition


def test_push_recognition_disabled_goes_to_wechat(sandbox: Sandbox) -> None:
    clip = sandbox.register_voice(LIGHTS)
    reply = bot(sandbox, use_push_recognition=False).voice(clip["media_id"], recognition="关闭所有的灯")
    assert parse_source(reply.content) == ("wechat", LIGHTS)
    assert apis(sandbox)[:3] == ["stable_token", "get", "addvoicetorecofortext"]


def test_push_recognition_not_in_the_chain_goes_to_wechat(sandbox: Sandbox) -> None:
    clip = sandbox.register_voice(LIGHTS)
    reply = bot(sandbox, recognizers=["wechat"]).voice(clip["media_id"], recognition="关闭所有的灯")
    assert parse_source(reply.content) == ("wechat", LIGHTS)


@pytest.mark.parametrize("name", ["voice_real_empty_recognition_community_2023.xml",
                                  "voice_no_recognition_wechatpy.xml"])
def test_empty_or_missing_recognition_uses_the_wechat_pipeline(sandbox: Sandbox, name: str) -> None:
    clip = sandbox.register_voice(LIGHTS)
    reply = bot(sandbox).send(sample(name, MediaId=clip["media_id"], MsgId=str(messages.next_msg_id())))
    assert parse_source(reply.content) == ("wechat", LIGHTS)
    assert apis(sandbox)[:3] == ["stable_token", "get", "addvoicetorecofortext"]
    assert apis(sandbox)[3:] and set(apis(sandbox)[3:]) == {"queryrecoresultfortext"}


# -- which media is downloaded ------------------------------------------------------------------------
def test_mediaid16k_is_downloaded_instead_of_mediaid(sandbox: Sandbox) -> None:
    clip = sandbox.register_voice(LIGHTS, with_16k=True)
    xml = sample("voice_current_official_doc_mediaid16k.xml", MediaId=clip["media_id"],
                 MediaId16K=clip["media_id_16k"], MsgId=str(messages.next_msg_id()), Format="amr")
    reply = bot(sandbox).send(xml)
    assert parse_source(reply.content) == ("wechat", LIGHTS)
    assert [c["query"]["media_id"] for c in calls_to(sandbox, "get")] == [clip["media_id_16k"]]


def test_invalid_mediaid16k_falls_back_to_mediaid(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    clip = sandbox.register_voice(LIGHTS)
    msg_id = messages.next_msg_id()
    reply = bot(sandbox).voice(clip["media_id"], media_id_16k="expired-16k-media", msg_id=msg_id)
    assert parse_source(reply.content) == ("wechat", LIGHTS)
    gets = calls_to(sandbox, "get")
    assert [(c["query"]["media_id"], c["errcode"]) for c in gets] == [("expired-16k-media", 40007),
                                                                       (clip["media_id"], 0)]
    assert any(f"msg_id={msg_id} MediaId16K refused" in r.getMessage() for r in caplog.records)


def test_invalid_media_answers_not_understood_and_logs_why(sandbox: Sandbox,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    msg_id = messages.next_msg_id()
    reply = bot(sandbox).voice("no-such-media-id", msg_id=msg_id)
    assert reply.content == SORRY
    assert [c["errcode"] for c in calls_to(sandbox, "get")] == [40007]
    assert "addvoicetorecofortext" not in apis(sandbox)
    lines = failure_lines(caplog, msg_id)
    assert len(lines) == 1 and "recognizer=wechat" in lines[0] and "reason=invalid_media" in lines[0]


def test_garbage_audio_answers_not_understood_with_reason_bad_audio(sandbox: Sandbox,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    media_id = sandbox.add_media(b"garbage", filename="voice.amr")
    msg_id = messages.next_msg_id()
    reply = bot(sandbox).voice(media_id, msg_id=msg_id)
    assert reply.content == SORRY
    assert apis(sandbox) == ["stable_token", "get"]  # never uploaded
    lines = failure_lines(caplog, msg_id)
    assert len(lines) == 1 and "reason=bad_audio" in lines[0]


@pytest.mark.parametrize("key", list(AUDIO_FIXTURES))
def test_speex_and_amr_wb_fixtures_are_recognized(sandbox: Sandbox, key: str) -> None:
    _, fmt, text = AUDIO_FIXTURES[key]
    media_id = sandbox.fixture_media[key]  # type: ignore[attr-defined]
    reply = bot(sandbox).voice(media_id, fmt=fmt, recognition="" if fmt == "speex" else None)
    assert parse_source(reply.content) == ("wechat", text)
    uploads = calls_to(sandbox, "addvoicetorecofortext")
    assert [c["errcode"] for c in uploads] == [0]


# -- busy, bad token ----------------------------------------------------------------------------------
def test_busy_on_query_then_success(sandbox: Sandbox) -> None:
    sandbox.configure(recognition_latency_s=0.0)
    sandbox.inject_fault("queryrecoresultfortext", -1, times=2)
    clip = sandbox.register_voice(LIGHTS)
    reply = bot(sandbox).voice(clip["media_id"])
    assert parse_source(reply.content) == ("wechat", LIGHTS)
    assert [c["errcode"] for c in calls_to(sandbox, "queryrecoresultfortext")] == [-1, -1, 0]


def test_busy_on_upload_then_success(sandbox: Sandbox) -> None:
    sandbox.inject_fault("addvoicetorecofortext", -1)
    clip = sandbox.register_voice(LIGHTS)
    reply = bot(sandbox).voice(clip["media_id"])
    assert parse_source(reply.content) == ("wechat", LIGHTS)
    uploads = calls_to(sandbox, "addvoicetorecofortext")
    assert [c["errcode"] for c in uploads] == [-1, 0]
    assert uploads[0]["query"]["voice_id"] == uploads[1]["query"]["voice_id"]


def test_40001_on_upload_refreshes_the_token_once_and_retries_once(sandbox: Sandbox) -> None:
    sandbox.inject_fault("addvoicetorecofortext", 40001)
    clip = sandbox.register_voice(LIGHTS)
    reply = bot(sandbox).voice(clip["media_id"])
    assert parse_source(reply.content) == ("wechat", LIGHTS)
    seq = apis(sandbox)
    assert seq[:5] == ["stable_token", "get", "addvoicetorecofortext", "stable_token", "addvoicetorecofortext"]
    tokens = calls_to(sandbox, "stable_token")
    assert len(tokens) == 2
    assert tokens[0]["json"]["force_refresh"] is False and tokens[1]["json"]["force_refresh"] is True
    assert [c["errcode"] for c in calls_to(sandbox, "addvoicetorecofortext")] == [40001, 0]


def test_40001_twice_fails_clearly_without_looping(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    sandbox.inject_fault("addvoicetorecofortext", 40001, times=5)
    clip = sandbox.register_voice(LIGHTS)
    msg_id = messages.next_msg_id()
    started = time.monotonic()
    reply = bot(sandbox).voice(clip["media_id"], msg_id=msg_id)
    assert time.monotonic() - started < 2.0
    assert reply.content == SORRY
    assert apis(sandbox) == ["stable_token", "get", "addvoicetorecofortext", "stable_token", "addvoicetorecofortext"]
    lines = failure_lines(caplog, msg_id)
    assert len(lines) == 1 and "reason=upload_failed" in lines[0] and "40001" in lines[0]


# -- the recognition window ---------------------------------------------------------------------------
def test_result_late_in_the_window_is_answered(sandbox: Sandbox) -> None:
    sandbox.configure(recognition_latency_s=1.2)
    clip = sandbox.register_voice(LIGHTS)
    started = time.monotonic()
    reply = bot(sandbox).voice(clip["media_id"])
    assert parse_source(reply.content) == ("wechat", LIGHTS)
    assert 1.2 <= time.monotonic() - started < WINDOW + 0.5
    queries = calls_to(sandbox, "queryrecoresultfortext")
    assert len(queries) >= 3 and all(c["errcode"] == 0 for c in queries)


def test_window_expired_answers_not_understood_with_reason_timeout(sandbox: Sandbox,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    sandbox.configure(recognition_latency_s=3.0, window_s=5.0)
    clip = sandbox.register_voice(LIGHTS)
    msg_id = messages.next_msg_id()
    started = time.monotonic()
    reply = bot(sandbox, window_s=0.8).voice(clip["media_id"], msg_id=msg_id)
    elapsed = time.monotonic() - started
    assert reply.content == SORRY
    assert 0.8 <= elapsed < 2.2  # gave up at its own window, before the result (3 s) or the chain's timeout
    queries = calls_to(sandbox, "queryrecoresultfortext")
    assert queries and queries[-1]["t"] - calls_to(sandbox, "addvoicetorecofortext")[0]["t"] <= 1.1
    lines = failure_lines(caplog, msg_id)
    assert len(lines) == 1 and "reason=timeout" in lines[0]


def test_query_after_wechats_window_gets_46001_and_stops(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    sandbox.configure(recognition_latency_s=1.0, window_s=0.4)  # WeChat's window is shorter than the bot's
    clip = sandbox.register_voice(LIGHTS)
    msg_id = messages.next_msg_id()
    started = time.monotonic()
    reply = bot(sandbox, window_s=3.0).voice(clip["media_id"], msg_id=msg_id)
    assert reply.content == SORRY
    assert time.monotonic() - started < 2.5  # stopped at the 46001, not at its own 3 s window
    errcodes = [c["errcode"] for c in calls_to(sandbox, "queryrecoresultfortext")]
    assert errcodes[-1] == 46001 and errcodes.count(46001) == 1 and set(errcodes[:-1]) <= {0}
    lines = failure_lines(caplog, msg_id)
    assert len(lines) == 1 and "reason=timeout" in lines[0] and "46001" in lines[0]


def test_real_scale_window_result_at_8_seconds(sandbox: Sandbox) -> None:
    """WeChat's real clocks: a 10 s recognition window with the result ready at 8 s, default polling, and
    WeChat's 5 s reply deadline. The first try is held past 5 s (so WeChat retries); WeChat's retry, the
    very same request, gets the answer at about 8 s."""
    sandbox.configure(recognition_latency_s=8.0, window_s=10.0)
    clip = sandbox.register_voice(LIGHTS)
    client = bot(sandbox, window_s=10.0, poll_initial_s=0.2, poll_max_s=0.5)
    assert client.config.reply.wechat_timeout_s == 5.0 and client.config.reply.budget_s == 4.5
    query, body = client.envelope.wrap(messages.voice(clip["media_id"]))
    started = time.monotonic()
    first = client.envelope.unwrap(*client.post_raw(query, body))
    first_s = time.monotonic() - started
    second = client.envelope.unwrap(*client.post_raw(query, body))  # WeChat's retry: byte-identical
    elapsed = time.monotonic() - started
    assert first.is_success and 5.0 <= first_s < 6.0  # held until WeChat gave up on it: no answer yet
    assert parse_source(second.content) == ("wechat", LIGHTS)
    assert 8.0 <= elapsed < 10.0  # within the recognition window
    assert apis(sandbox).count("addvoicetorecofortext") == 1  # one job for both tries
    queries = calls_to(sandbox, "queryrecoresultfortext")
    assert 10 <= len(queries) <= 45  # backed off to poll_max_s, not a busy loop
    assert [c["errcode"] for c in queries] == [0] * len(queries)


# -- retries of the same message ----------------------------------------------------------------------
def test_duplicate_voice_id_polls_the_earlier_upload(sandbox: Sandbox) -> None:
    """The same push twice, reaching two workers that share no state: the second upload is refused
    (47001, voice_id already used) and that worker polls the first upload's result."""
    clip = sandbox.register_voice(LIGHTS)
    xml = messages.voice(clip["media_id"], msg_id=messages.next_msg_id())
    first = bot(sandbox).send(xml)
    second = bot(sandbox).send(xml)
    assert parse_source(first.content) == parse_source(second.content) == ("wechat", LIGHTS)
    uploads = calls_to(sandbox, "addvoicetorecofortext")
    assert [c["errcode"] for c in uploads] == [0, 47001]
    assert uploads[0]["query"]["voice_id"] == uploads[1]["query"]["voice_id"]
    after = [c for c in sandbox.calls() if c["t"] > uploads[1]["t"] and c["api"] == "queryrecoresultfortext"]
    assert after and after[-1]["errcode"] == 0
    assert {c["query"]["voice_id"] for c in after} == {uploads[0]["query"]["voice_id"]}


# -- language ---------------------------------------------------------------------------------------------
def test_lang_en_us_is_passed_to_upload_and_query(sandbox: Sandbox) -> None:
    clip = sandbox.register_voice("turn on the kitchen lights")
    reply = bot(sandbox, lights_router(), lang="en_US").voice(clip["media_id"])
    assert reply.content == "Turned on the kitchen lights"
    recognition = calls_to(sandbox, "addvoicetorecofortext") + calls_to(sandbox, "queryrecoresultfortext")
    assert len(recognition) >= 2 and {c["query"]["lang"] for c in recognition} == {"en_US"}


@pytest.mark.parametrize("recognizers, error", [
    (["push", "openai"], r"\[voice.openai\] url: empty"),
    (["push", "whisper"], r"unknown recognizer 'whisper'"),
    (["no_such_module_xyz:Recognizer"], r"cannot load 'no_such_module_xyz:Recognizer'"),
    (["voice_support:source_router"], r"has no recognize\(\)"),
])
def test_a_bad_recognizer_chain_stops_start_up_with_a_config_error(sandbox: Sandbox, recognizers: list[str],
                                                                   error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        build_webhook(make_config(sandbox, recognizers=recognizers), source_router)


# -- recognizers and routers from elsewhere -----------------------------------------------------------
PLUGIN = '''
class Shouty:
    """A third-party recognizer; the chain calls make(config) to get it."""
    name = "shouty"

    def __init__(self, suffix):
        self.suffix, self.clips = suffix, []

    def recognize(self, clip, deadline):
        self.clips.append((clip.msg_id, len(clip.mp3().data)))
        return "打开客厅的灯" + self.suffix


def make(config):
    return Shouty("" if config.voice.lang == "zh_CN" else "!")
'''


def test_third_party_recognizer_factory_by_module_path(sandbox: Sandbox, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shouty_recognizer.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sandbox.inject_fault("addvoicetorecofortext", 45009)
    clip = sandbox.register_voice("关闭卧室的灯")
    client = bot(sandbox, lights_router(), recognizers=["push", "wechat", "shouty_recognizer:make"])
    reply = client.voice(clip["media_id"])
    assert reply.content == "已打开客厅的灯"
    shouty = client.webhook.transcriber.recognizers[-1]  # type: ignore[union-attr]
    assert shouty.name == "shouty" and len(shouty.clips) == 1 and shouty.clips[0][1] > 1000
    assert "addvoicetorecofortext" in apis(sandbox)  # wechat was tried first


def test_third_party_recognizer_class_by_module_path(sandbox: Sandbox) -> None:
    clip = sandbox.register_voice(LIGHTS)
    reply = bot(sandbox, recognizers=["voice_support:MyRecognizer"], lang="en_US").voice(clip["media_id"])
    assert parse_source(reply.content) == ("mine", "turn off the bedroom lights")
    assert apis(sandbox) == ["stable_token", "get"]  # only the shared download


def test_intents_written_for_text_answer_voice(sandbox: Sandbox) -> None:
    client = bot(sandbox, lights_router())
    for sentence, answer in ((LIGHTS, "已打开客厅的灯"), ("关掉书房的灯", "已关闭书房的灯"),
                             ("打开阳台的灯", "没有找到“阳台”")):
        clip = sandbox.register_voice(sentence)
        spoken, typed = client.voice(clip["media_id"]).content, client.text(sentence).content
        assert spoken == typed and spoken is not None and spoken.startswith(answer)


# -- secrets ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["stable", "classic"])
def test_no_secret_or_token_in_any_log_record(sandbox: Sandbox, caplog: pytest.LogCaptureFixture,
                                              endpoint: str) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.inject_fault("addvoicetorecofortext", 40001)  # the refresh path logs too
    clip = sandbox.register_voice(LIGHTS)
    client = BotClient(build_webhook(make_config(sandbox, wechat={"token_endpoint": endpoint}), source_router))
    assert parse_source(client.voice(clip["media_id"]).content) == ("wechat", LIGHTS)
    client.voice("no-such-media")  # and an error path
    issued = list(sandbox.state.tokens)
    current = client.webhook.services.client.tokens.get()  # type: ignore[union-attr]
    assert current in issued and len(issued) >= 2
    texts = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any("urllib3" == r.name.split(".")[0] for r in caplog.records)  # DEBUG really captured HTTP logs
    for text in texts:
        assert SECRET not in text
        for token in issued:
            assert token not in text


# -- over real HTTP: gunicorn, two workers, one SQLite store ------------------------------------------
def test_voice_through_gunicorn_shares_one_token(sandbox: Sandbox, write_config: Any, gunicorn_factory: Any,
                                                 tmp_path: Path) -> None:
    path = write_config(wechat={"appid": APPID, "appsecret": SECRET, "api_base_url": sandbox.url},
                        voice={**FAST, "not_understood": SORRY},
                        handlers={"routers": ["handlers.lights:router"]},
                        storage={"url": f"sqlite:///{tmp_path / 'state.db'}"})
    server: Server = gunicorn_factory(path, workers=2, threads=2)
    client = BotClient(load_config(path), url=server.url)
    sentences = {LIGHTS: "已打开客厅的灯", "关闭卧室的灯": "已关闭卧室的灯"}
    clips = {s: sandbox.register_voice(s) for s in sentences}
    for _ in range(3):
        for sentence, answer in sentences.items():
            assert client.voice(clips[sentence]["media_id"]).content == answer
    assert client.voice("no-such-media").content == SORRY
    assert apis(sandbox).count("stable_token") == 1  # two workers, one fetch
    assert len(calls_to(sandbox, "addvoicetorecofortext")) == 6
