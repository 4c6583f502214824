"""The synthesizer chain (bot/voice/synthesizers/): the ``openai`` synthesizer against the sandbox's real
``/v1/audio/speech`` over HTTP, ``espeak`` in-process, plug-ins by module path, and falling through on
failures, timeouts and audio WeChat would reject."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import speech_support

from bot.config import ConfigError
from bot.ops.metrics import SYNTHESES, SYNTHESIS_SECONDS
from bot.ops.trace import Trace
from bot.sandbox import FREQUENCY_GRID, Sandbox
from bot.testing import test_config
from bot.voice.audio import decode_pcm
from bot.voice.synthesizers import SynthesizerChain, build_synthesizer, build_synthesizer_chain
from bot.voice.synthesizers.espeak import EspeakSynthesizer
from bot.voice.synthesizers.openai import OpenAISynthesizer
from bot.voice.tones import detect_tone


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture(autouse=True)
def clean(sandbox: Sandbox) -> Iterator[None]:
    sandbox.reset(settings=True)
    yield


def config(sandbox: Sandbox, *synthesizers: str, **openai: Any) -> Any:
    return test_config(voice={"reply": {"when": "voice", "synthesizers": list(synthesizers) or ["openai"],
                                        "openai": {"url": sandbox.url, "timeout_s": 2.0, **openai}}})


def chain(sandbox: Sandbox, *synthesizers: str, **openai: Any) -> SynthesizerChain:
    return build_synthesizer_chain(config(sandbox, *synthesizers, **openai))


def says(sandbox: Sandbox, data: bytes) -> str:
    """What the sandbox's tone in ``data`` stands for (the text it was synthesized from)."""
    pcm, _ = decode_pcm(data, sample_rate=16000)
    return sandbox.state.text_for(detect_tone(pcm, 16000, FREQUENCY_GRID))


def count(metric: Any, *labels: str) -> float:
    return metric.labels(*labels)._value.get()


@pytest.mark.parametrize("response_format", ["mp3", "wav", "opus", "aac", "flac"])
def test_openai_speech_from_the_sandbox_becomes_voice_that_says_the_answer(sandbox: Sandbox,
                                                                           response_format: str) -> None:
    speech = chain(sandbox, response_format=response_format, voice="nova").speak("已打开客厅的灯", msg_id="m1")
    assert speech.ok and speech.source == "openai" and speech.error is None
    assert len(speech.parts) == 1 and speech.parts[0].fmt == "amr"
    assert speech.duration_s == pytest.approx(7 * 0.2, abs=0.1)
    assert says(sandbox, speech.parts[0].data) == "已打开客厅的灯"
    [call] = sandbox.calls()
    assert call["path"] == "/v1/audio/speech" and call["json"] == {
        "model": "tts-1", "input": "已打开客厅的灯", "voice": "nova", "response_format": response_format}
    assert [name for name, _ in speech.steps] == ["synthesize", "speech_transcode"]


def test_mp3_media_when_configured(sandbox: Sandbox) -> None:
    cfg = test_config(voice={"reply": {"format": "mp3", "openai": {"url": sandbox.url}}})
    speech = build_synthesizer_chain(cfg).speak("好的")
    _, info = decode_pcm(speech.parts[0].data)
    assert speech.parts[0].fmt == "mp3" and (info.codec, info.sample_rate) == ("mp3", 16000)


def test_a_failing_synthesizer_hands_over_to_the_next(sandbox: Sandbox) -> None:
    sandbox.inject_fault("audio/speech", -1, http_status=500)
    before = count(SYNTHESES, "openai", "unavailable"), count(SYNTHESES, "tone", "ok")
    speech = chain(sandbox, "openai", "speech_support:ToneSynthesizer").speak("打开卧室的灯")
    assert speech.source == "tone" and speech.ok and speech.error is None
    pcm, _ = decode_pcm(speech.parts[0].data, sample_rate=8000)
    assert detect_tone(pcm, 8000, [speech_support.TONE]) == speech_support.TONE
    assert (count(SYNTHESES, "openai", "unavailable"), count(SYNTHESES, "tone", "ok")) == (before[0] + 1,
                                                                                            before[1] + 1)
    assert SYNTHESIS_SECONDS.labels("openai")._sum.get() > 0


def test_a_synthesizer_that_times_out_hands_over_to_the_next(sandbox: Sandbox) -> None:
    sandbox.configure(speech_latency_s=1.5)
    started = time.monotonic()
    speech = chain(sandbox, "openai", "espeak", timeout_s=0.3).speak("打开卧室的灯", msg_id="m-timeout")
    assert speech.source == "espeak" and speech.ok
    assert time.monotonic() - started < 1.4  # did not wait for the slow endpoint
    assert [name for name, _ in speech.steps] == ["synthesize", "synthesize", "speech_transcode"]


@pytest.mark.parametrize("answer", ["this is not audio", "<html><body>502 Bad Gateway</body></html>"])
def test_audio_wechat_would_reject_hands_over_to_the_next(sandbox: Sandbox, answer: str) -> None:
    sandbox.inject_fault("audio/speech", 0, http_status=200, body=answer)
    speech = chain(sandbox, "openai", "speech_support:ToneSynthesizer").speak("打开卧室的灯")
    assert speech.source == "tone"
    speech = chain(sandbox, "speech_support:silent", "openai").speak("打开卧室的灯")  # silence: no answer either
    assert speech.source == "openai" and says(sandbox, speech.parts[0].data) == "打开卧室的灯"


def test_when_every_synthesizer_fails_the_speech_says_why(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    sandbox.inject_fault("audio/speech", -1, http_status=503)
    trace = Trace("m-test")
    speech = chain(sandbox, "openai", "speech_support:silent", "speech_support:refusing",
                   "speech_support:broken").speak("你好", msg_id="m-all", trace=trace)
    assert not speech.ok and speech.parts == () and speech.source is None
    assert speech.error == "openai:unavailable,silent:bad_audio,refusing:unavailable,broken:crashed"
    assert set(trace.steps) == {"synthesize", "speech_transcode"}
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.voice" and "msg_id=m-all" in r.getMessage()]
    assert len(lines) == 4 and "synthesizer=openai msg_id=m-all failed reason=unavailable" in lines[0]


def test_a_passed_deadline_tries_nothing(sandbox: Sandbox) -> None:
    speech = chain(sandbox).speak("你好", deadline=time.monotonic() - 1)
    assert speech.error == "openai:timeout" and sandbox.calls() == []


def test_empty_text_and_text_too_long_for_the_endpoint(sandbox: Sandbox) -> None:
    assert chain(sandbox).speak("  ").error == "empty_text"
    assert chain(sandbox).speak("长" * 4097).error == "openai:too_long" and sandbox.calls() == []


def test_a_150_second_answer_from_the_sandbox_is_three_parts(sandbox: Sandbox) -> None:
    text = "打开客厅的灯好的吗，" * 75  # 750 characters of 0.2 s
    speech = chain(sandbox, timeout_s=20.0).speak(text)  # 150 s of speech: a busy machine needs more than 2 s
    assert len(speech.parts) == 3 and speech.duration_s == pytest.approx(150, abs=0.1)
    assert all(p.duration_s <= 60 and len(p.data) <= 2_000_000 for p in speech.parts)
    assert all(says(sandbox, p.data) == text for p in speech.parts)


@pytest.mark.parametrize("lang, text", [("zh_CN", "已打开客厅的灯。"), ("en_US", "The living room lights are on.")])
def test_espeak_speaks_mandarin_and_english_offline(lang: str, text: str) -> None:
    synthesizer = build_synthesizer("espeak", test_config())
    assert isinstance(synthesizer, EspeakSynthesizer)
    speech = SynthesizerChain([synthesizer], lang=lang).speak(text)
    assert speech.source == "espeak" and 0.8 < speech.duration_s < 4
    pcm, info = decode_pcm(speech.parts[0].data, sample_rate=8000)
    assert info.codec == "amr_nb" and max(pcm) > 1000  # audible speech, not silence


def test_plugins_load_by_module_path_as_factories_or_instances(sandbox: Sandbox) -> None:
    built = chain(sandbox, "speech_support:ToneSynthesizer", "speech_support:silent").synthesizers
    assert [s.name for s in built] == ["tone", "silent"]
    assert isinstance(built[0], speech_support.ToneSynthesizer) and built[1] is speech_support.silent
    speech = SynthesizerChain(built, lang="en_US").speak("hello")
    assert speech.source == "tone" and built[0].calls == [("hello", "en_US")]


@pytest.mark.parametrize("reply, match", [
    ({"synthesizers": ["polly"]}, r"\[voice.reply\] synthesizers\[0\]: expected one of openai, espeak or "
                                  r"'module:attribute', got 'polly'"),
    ({"when": "sometimes"}, r"\[voice.reply\] when: expected 'never' or 'voice' or 'always'"),
    ({"format": "wav"}, r"\[voice.reply\] format: expected 'amr' or 'mp3'"),
    ({"when": "voice"}, r"\[voice.reply.openai\] url: required when \[voice.reply\] synthesizers lists \"openai\""),
    ({"when": "always", "synthesizers": []}, r"\[voice.reply\] synthesizers: empty"),
    ({"openai": {"url": "ftp://tts"}}, r"\[voice.reply.openai\] url: expected an http:// or https:// URL"),
    ({"openai": {"timeout_s": 0}}, r"\[voice.reply.openai\] timeout_s: expected a positive number"),
    ({"openai": {"response_format": "pcm"}}, r"\[voice.reply.openai\] response_format: expected 'mp3'"),
    ({"openai": {"speed": 1.2}}, r"\[voice.reply.openai\] speed: unknown key"),
])
def test_config_mistakes_stop_start_up_with_one_line(reply: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        test_config(voice={"reply": reply})


def test_config_defaults_change_nothing_and_the_key_may_come_from_the_environment() -> None:
    from bot.config import config_from_dict
    reply = test_config().voice.reply
    assert (reply.when, reply.with_text, reply.synthesizers, reply.format) == ("never", False, ["openai"], "amr")
    raw = {"wechat": {"appid": "a", "appsecret": "s", "token": "t"},
           "voice": {"reply": {"openai": {"url": "http://x"}}}}
    cfg = config_from_dict(raw, env={"VOICEBOT_TTS_API_KEY": "sk-tts-secret"})
    assert cfg.voice.reply.openai.api_key == "sk-tts-secret" and "sk-tts-secret" not in repr(cfg)
    assert "api_key" not in raw["voice"]["reply"]["openai"]  # the caller's dict is left alone
    from bot.ops.logs import config_secrets
    assert "sk-tts-secret" in config_secrets(cfg)


def test_unknown_plugins_fail_at_build_time() -> None:
    """At start-up (``strict``, bot.runtime.check_config); the chain a bot builds on first use lets them stand
    aside instead (tests/test_startup_checks.py)."""
    with pytest.raises(ConfigError, match=r"cannot load 'no_such_module_xyz:Synth'"):
        build_synthesizer_chain(test_config(voice={"reply": {"synthesizers": ["no_such_module_xyz:Synth"]}}),
                                strict=True)
    with pytest.raises(ConfigError, match=r"has no synthesize\(\)"):
        build_synthesizer_chain(test_config(voice={"reply": {"synthesizers": ["speech_support:TONE"]}}), strict=True)
    with pytest.raises(ConfigError, match=r"\[voice.reply.openai\] url: empty"):
        build_synthesizer_chain(test_config(), strict=True)


def test_openai_sends_the_key_as_a_bearer_token(sandbox: Sandbox) -> None:
    seen: list[str | None] = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *a, **k: seen.append(r.request.headers.get("Authorization")))
    cfg = config(sandbox, api_key="sk-tts").voice.reply.openai
    OpenAISynthesizer(cfg, session=session).synthesize("你好", "zh_CN", time.monotonic() + 5)
    assert seen == ["Bearer sk-tts"]


@pytest.mark.parametrize("body, status, message", [
    ({"model": "m", "voice": "v"}, 400, "'input' is required"),
    ({"model": "m", "input": "你好", "voice": "v", "response_format": "pcm"}, 400, "'response_format' must be"),
    ("not json", 400, "JSON object"),
])
def test_the_sandbox_speech_endpoint_refuses_like_openai(sandbox: Sandbox, body: Any, status: int,
                                                         message: str) -> None:
    r = requests.post(f"{sandbox.url}/v1/audio/speech", timeout=5,
                      **({"json": body} if isinstance(body, dict) else {"data": body}))
    assert r.status_code == status and message in r.json()["error"]["message"]


def test_the_sandbox_speech_lasts_per_character_and_is_slow_when_told(sandbox: Sandbox) -> None:
    sandbox.configure(speech_seconds_per_char=0.1, speech_latency_s=0.3)
    started = time.monotonic()
    r = requests.post(f"{sandbox.url}/v1/audio/speech", json={"model": "m", "input": "一二三四五六七八九十",
                                                              "voice": "v", "response_format": "wav"}, timeout=5)
    assert time.monotonic() - started >= 0.3 and r.headers["Content-Type"] == "audio/wav"
    _, info = decode_pcm(r.content)
    assert info.duration_s == pytest.approx(1.0, abs=0.01)
