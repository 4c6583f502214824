"""``openai``: any OpenAI-compatible ``/v1/audio/transcriptions`` endpoint (self-hosted whisper too).

The fallback that keeps an account working if WeChat retires its recognition API.
"""
from __future__ import annotations

import time

import requests

from bot.config import ConfigError, OpenAIConfig
from bot.voice.recognizers.base import RecognitionError, VoiceClip

LANGUAGES = {"zh_CN": "zh", "en_US": "en"}


class OpenAIRecognizer:
    name = "openai"

    def __init__(self, config: OpenAIConfig, *, lang: str = "zh_CN", session: requests.Session | None = None) -> None:
        if not config.url:
            raise ConfigError("[voice.openai] url: empty; set it to use the 'openai' recognizer")
        base = config.url.rstrip("/")
        self.url = base if base.endswith("/audio/transcriptions") else (
            f"{base}/audio/transcriptions" if base.endswith("/v1") else f"{base}/v1/audio/transcriptions")
        self.config, self.language = config, LANGUAGES.get(lang, "zh")
        self.session = session or requests.Session()

    def recognize(self, clip: VoiceClip, deadline: float) -> str:
        mp3 = clip.mp3()
        timeout = min(self.config.timeout_s, deadline - time.monotonic())
        if timeout <= 0:
            raise RecognitionError("timeout", "no time left for the openai recognizer")
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        started = time.perf_counter()
        try:
            r = self.session.post(self.url, headers=headers, timeout=timeout,
                                  files={"file": ("voice.mp3", mp3.data, "audio/mpeg")},
                                  data={"model": self.config.model, "language": self.language,
                                        "response_format": "json"})
        except requests.Timeout:
            raise RecognitionError("timeout", f"openai endpoint did not answer within {timeout:.1f}s") from None
        except requests.RequestException as exc:
            raise RecognitionError("unavailable", f"openai endpoint: {type(exc).__name__}") from None
        clip.timed("openai", started, status=r.status_code)
        if r.status_code != 200:
            raise RecognitionError("unavailable", f"openai endpoint answered HTTP {r.status_code}")
        try:
            text = str(r.json()["text"]).strip()
        except (ValueError, KeyError, TypeError):
            raise RecognitionError("bad_answer", "openai endpoint answer has no 'text'") from None
        if not text:
            raise RecognitionError("empty", "openai endpoint heard nothing")
        return text
