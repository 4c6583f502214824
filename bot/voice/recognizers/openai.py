"""``openai``: any OpenAI-compatible ``/v1/audio/transcriptions`` endpoint (self-hosted whisper too).

The fallback that keeps an account working if WeChat retires its recognition API.
"""
from __future__ import annotations

import time

import requests

from bot.config import ConfigError, OpenAIConfig
from bot.voice.openai_api import check, endpoint, post
from bot.voice.recognizers.base import RecognitionError, VoiceClip

LANGUAGES = {"zh_CN": "zh", "en_US": "en"}


class OpenAIRecognizer:
    name = "openai"

    def __init__(self, config: OpenAIConfig, *, lang: str = "zh_CN", session: requests.Session | None = None) -> None:
        if not config.url:
            raise ConfigError("[voice.openai] url: empty; set it to use the 'openai' recognizer")
        self.url = endpoint(config.url, "audio/transcriptions")
        self.config, self.language = config, LANGUAGES.get(lang, "zh")
        self.session = session or requests.Session()

    def recognize(self, clip: VoiceClip, deadline: float) -> str:
        mp3 = clip.mp3()
        started = time.perf_counter()
        r = post(self.session, self.url, api_key=self.config.api_key, timeout_s=self.config.timeout_s,
                 deadline=deadline, error=RecognitionError, who="openai recognizer",
                 files={"file": ("voice.mp3", mp3.data, "audio/mpeg")},
                 data={"model": self.config.model, "language": self.language, "response_format": "json"})
        clip.timed("openai", started, status=r.status_code)
        check(r, RecognitionError)
        try:
            text = str(r.json()["text"]).strip()
        except (ValueError, KeyError, TypeError):
            raise RecognitionError("bad_answer", "openai endpoint answer has no 'text'") from None
        if not text:
            raise RecognitionError("empty", "openai endpoint heard nothing")
        return text
