"""``openai``: any OpenAI-compatible ``/v1/audio/transcriptions`` endpoint (OpenAI, Groq, SiliconFlow, or a
self-hosted server such as speaches or FunASR-API).

The recognizer that keeps an account working now that WeChat retires its own recognition (README, "Voice
recognition", lists configurations for each). Every one of those services takes the mp3 (16 kHz, mono) the chain
makes for WeChat, so the audio is transcoded once for the whole chain.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import requests

from bot.config import ConfigError, OpenAIConfig
from bot.voice.openai_api import check, endpoint, post
from bot.voice.recognizers.base import RecognitionError, VoiceClip

LANGUAGES = {"zh_CN": "zh", "en_US": "en"}
# Whisper reads at most the last 224 tokens of a prompt (a Chinese character is one token or more): the hint list
# stops before that, so the words of the configured prompt always count.
MAX_PROMPT_CHARS = 224
_SEPARATORS = {"zh_CN": "、", "en_US": ", "}

log = logging.getLogger("bot.voice")


def build_prompt(prompt: str, hints: Sequence[str], lang: str) -> str:
    """``prompt`` followed by as many of ``hints`` (whole words, in order) as fit :data:`MAX_PROMPT_CHARS`."""
    sep = _SEPARATORS.get(lang, ", ")
    text, used = prompt.strip(), 0
    for word in hints:
        candidate = f"{text}{sep if text else ''}{word}"
        if len(candidate) > MAX_PROMPT_CHARS:
            break
        text, used = candidate, used + 1
    if used < len(hints):
        log.warning("voice openai prompt: %d of %d [[intents]] keywords fit in %d characters; the rest are left out",
                    used, len(hints), MAX_PROMPT_CHARS)
    return text


class OpenAIRecognizer:
    name = "openai"

    def __init__(self, config: OpenAIConfig, *, lang: str = "zh_CN", hints: Sequence[str] = (),
                 session: requests.Session | None = None) -> None:
        """``hints``: words the bot knows (the ``[[intents]]`` keywords), sent in the prompt with
        ``prompt_intents = true``."""
        if not config.url:
            raise ConfigError("[voice.openai] url: empty; set it to use the 'openai' recognizer")
        self.url = endpoint(config.url, "audio/transcriptions")
        self.config = config
        self.session = session or requests.Session()
        self.fields = {"model": config.model, "response_format": "json"}
        language = LANGUAGES.get(lang, "zh") if config.language == "" else config.language
        if language != "omit":
            self.fields["language"] = language
        prompt = build_prompt(config.prompt, hints if config.prompt_intents else (), lang)
        if prompt:
            self.fields["prompt"] = prompt

    def recognize(self, clip: VoiceClip, deadline: float) -> str:
        mp3 = clip.mp3()
        started = clip.clock()
        r = post(self.session, self.url, api_key=self.config.api_key, timeout_s=self.config.timeout_s,
                 deadline=deadline, error=RecognitionError, who="openai recognizer", clock=clip.clock,
                 files={"file": ("voice.mp3", mp3.data, "audio/mpeg")}, data=self.fields)
        clip.timed("openai", started, status=r.status_code)
        check(r, RecognitionError)
        try:
            text = str(r.json()["text"]).strip()
        except (ValueError, KeyError, TypeError):
            raise RecognitionError("bad_answer", "openai endpoint answer has no 'text'") from None
        if not text:
            raise RecognitionError("empty", "openai endpoint heard nothing")
        return text
