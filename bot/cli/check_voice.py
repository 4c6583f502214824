"""``check``'s voice lines: every configured recognizer hears a short real spoken clip, and the chain is judged.

WeChat's own recognition answers nothing on many accounts today (README, "Voice recognition"), and a chain that
only *reaches* its services can still hear nothing. So each recognizer gets real speech — ``--voice FILE`` (a
recording of your own, any format PyAV reads: amr, mp3, wav, m4a, ...), else a sentence spoken by espeak-ng (the
``espeak`` extra); against the local sandbox, which hears only its own clips, one of those — and its line says what
it heard, that it heard nothing, or its error, with its time. A
recognizer that failed while a later one heard the clip is a warning (the chain hands over), not a failure.
Without a clip, each recognizer is only checked for what it needs. Nothing reaches any user: WeChat's recognition
gets an upload under a voice_id of its own, a speech service one POST.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import Config, ConfigError
from bot.voice.recognizers.chain import WECHAT_OWN, build_recognizer

SENTENCES = {"zh_CN": "打开客厅的灯", "en_US": "turn on the living room lights"}
HEARD_NOTHING = frozenset({"empty_final", "empty", "no_push_recognition"})
FIXES = {  # reason → what to do, for recognizers none of whose successors heard the clip
    "empty_final": "WeChat's recognition finished with nothing, as it does on accounts where WeChat retired it",
    "unavailable": "check [voice.openai] url, model and api_key (or VOICEBOT_STT_API_KEY)",
    "timeout": "the service did not answer in time: check it, or raise [voice.openai] timeout_s",
    "empty": "the service heard no words: check [voice.openai] model and language, or the clip (--voice FILE)",
}
FALLBACK_FIX = ("only WeChat's own recognition is configured, which WeChat is retiring (many accounts get empty "
                "results): add a speech service, e.g. [voice] recognizers = [\"push\", \"wechat\", \"openai\"] with "
                "[voice.openai] url (README \"Voice recognition\" lists OpenAI, Groq, SiliconFlow and self-hosted "
                "servers)")


@dataclass(frozen=True)
class Line:
    """One line of ``check``: ``kind`` is ``ok``, ``warn`` (printed, not a failure) or ``fail``."""

    kind: str
    name: str
    detail: str


@dataclass(frozen=True)
class Clip:
    audio: bytes
    fmt: str
    described: str


def voice_lines(config: Config, wechat_ok: bool, voice_file: str | None = None) -> list[Line]:
    """The voice clip, one line per configured recognizer, and the fallback advice when there is none."""
    clip, clip_line = _clip(config, voice_file)
    client = _client(config) if wechat_ok else None
    ended = [(spec, _try(config, spec, client, wechat_ok, clip)) for spec in config.voice.recognizers]
    lines = [clip_line]
    for i, (spec, outcome) in enumerate(ended):
        later = [s for s, o in ended[i + 1:] if isinstance(o, _Heard)]  # who hears it when this one does not
        lines.append(outcome.line(f"recognizer {spec}", later))
    wecom = config.account.kind == "wecom_app"  # check.py's WeCom line says what its voice needs
    if not wecom and all(spec in WECHAT_OWN for spec in config.voice.recognizers):
        lines.append(Line("warn", "voice fallback", FALLBACK_FIX))
    return lines


# -- the clip ------------------------------------------------------------------------------------------
def _clip(config: Config, voice_file: str | None) -> tuple[Clip | None, Line]:
    from bot.voice.audio import AudioError, decode_pcm
    if voice_file:
        try:
            audio = Path(voice_file).read_bytes()
        except OSError as exc:
            return None, Line("fail", "voice clip", f"cannot read {voice_file}: {exc.strerror or exc}")
        described = f"{voice_file}"
        fmt = Path(voice_file).suffix.lstrip(".").lower() or "amr"
    elif (sandbox := _sandbox_clip(config)) is not None:
        audio, described, fmt = sandbox
    else:
        sentence = SENTENCES.get(config.voice.lang, SENTENCES["zh_CN"])
        try:
            from bot.voice.synthesizers.espeak import EspeakSynthesizer
            audio = EspeakSynthesizer().synthesize(sentence, config.voice.lang, time.monotonic() + 30)
        except Exception as exc:  # not installed (a ConfigError), or espeak-ng failed
            detail = "the espeak extra is not installed" if isinstance(exc, ConfigError) else f"espeak-ng failed ({exc})"
            return None, Line("warn", "voice clip", f"none to test the recognizers with ({detail}): pip install "
                                                    "'wechat-voicebot[espeak]', or pass --voice FILE (a recording); "
                                                    "checked below only for what each needs")
        described, fmt = f"espeak-ng saying \"{sentence}\"", "wav"
    try:
        _, info = decode_pcm(audio, sample_rate=16000, max_seconds=60)
    except AudioError as exc:
        return None, Line("fail", "voice clip", f"{described} is not audio that can be decoded ({exc})")
    return Clip(audio, fmt, described), Line("ok", "voice clip", f"{info.duration_s:.1f} s, {described}")


def _sandbox_clip(config: Config) -> tuple[bytes, str, str] | None:
    """Against the local sandbox, which hears only its own clips (tones), not speech: one of its clips."""
    import requests

    from bot.cli.simulate import sandbox_url
    base = sandbox_url(config)
    if base is None:
        return None
    sentence = SENTENCES.get(config.voice.lang, SENTENCES["zh_CN"])
    try:
        clip = requests.post(f"{base}/sandbox/voices", json={"text": sentence}, timeout=10).json()
        audio = requests.get(f"{base}/sandbox/uploads/{clip['media_id']}/data", timeout=10).content
    except (requests.RequestException, ValueError, KeyError):
        return None
    return audio, f"the sandbox's clip for \"{sentence}\" (the sandbox hears its own clips, not speech)", "amr"


def _client(config: Config) -> Any:
    """The account's API client with a throwaway token cache (the running bot's shared token is left alone)."""
    from bot.runtime import build_client
    from bot.store.memory import MemoryStore
    return build_client(config, MemoryStore())


# -- one recognizer ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Heard:
    text: str
    seconds: float

    def line(self, name: str, later: list[str]) -> Line:
        return Line("ok", name, f"heard \"{self.text}\" in {self.seconds:.2f} s")


@dataclass(frozen=True)
class _Failed:
    reason: str
    detail: str
    seconds: float

    def line(self, name: str, later: list[str]) -> Line:
        what = "heard nothing" if self.reason in HEARD_NOTHING else "failed"
        text = f"{what} in {self.seconds:.2f} s ({self.reason}: {self.detail})"
        if later:
            return Line("warn", name, f"{text}; the chain hands over to {later[0]}, which heard it")
        fix = FIXES.get(self.reason)
        return Line("fail", name, f"{text}: {fix}" if fix else text)


@dataclass(frozen=True)
class _Untested:
    kind: str
    detail: str

    def line(self, name: str, later: list[str]) -> Line:
        return Line(self.kind, name, self.detail)


Outcome = _Heard | _Failed | _Untested


def _try(config: Config, spec: str, client: Any, wechat_ok: bool, clip: Clip | None) -> Outcome:
    """How ``spec`` did on the clip: :class:`_Heard`, :class:`_Failed` or :class:`_Untested`."""
    if spec == "push":
        return _Untested("ok", "not tested: it reads <Recognition> of WeChat's pushes (often empty, and retired with "
                               "WeChat's recognition)" if config.voice.use_push_recognition else
                         "disabled ([voice] use_push_recognition = false)")
    if spec == "wechat" and not wechat_ok:
        return _Untested("fail", "needs the WeChat API token: fix the WeChat API line above")
    try:
        recognizer = build_recognizer(spec, config, client)
    except ConfigError as exc:
        return _Untested("fail", str(exc))
    if recognizer is None:  # only push can be switched off, and it is handled above
        return _Untested("ok", "disabled")
    if clip is None:
        return _needs(config, spec)
    from bot.voice.recognizers.base import RecognitionError, VoiceClip
    voice = VoiceClip(msg_id=f"check-{uuid.uuid4().hex}", media_id="check", media_id_16k=None, fmt=clip.fmt,
                      recognition=None, download=lambda media_id: clip.audio)
    started = time.monotonic()
    try:
        text = recognizer.recognize(voice, started + config.voice.window_s + 15.0)
    except RecognitionError as exc:
        return _Failed(exc.reason, exc.detail, time.monotonic() - started)
    except Exception as exc:  # someone's recognizer may raise anything
        return _Failed("crashed", f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    return _Heard(text, time.monotonic() - started)


def _needs(config: Config, spec: str) -> _Untested:
    """Without a clip: what a recognizer needs, checked as far as possible without audio."""
    if spec == "wechat":
        return _Untested("ok", "ready (uses the WeChat API token)")
    if spec != "openai":
        return _Untested("ok", "loads")
    import requests
    url = config.voice.openai.url
    try:  # any HTTP answer from the base URL means reachable (a GET needs no key and sends no audio)
        response = requests.get(url, timeout=min(config.voice.openai.timeout_s, 5.0))
    except requests.RequestException as exc:
        return _Untested("fail", f"cannot reach {url} ({type(exc).__name__}): check [voice.openai] url")
    return _Untested("ok", f"{url} reachable (HTTP {response.status_code})")
