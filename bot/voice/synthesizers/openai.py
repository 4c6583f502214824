"""``openai``: any OpenAI-compatible ``POST /v1/audio/speech`` (OpenAI, or a self-hosted speech server).

JSON ``{"model", "input", "voice", "response_format"}`` in, audio bytes out. What the audio is gets decided
from its bytes when it is transcoded, so a server that ignores ``response_format`` still works.
"""
from __future__ import annotations

import requests

from bot.config import ConfigError, OpenAISpeechConfig
from bot.voice.openai_api import check, endpoint, post
from bot.voice.synthesizers.base import SynthesisError

MAX_INPUT_CHARS = 4096  # OpenAI's limit for ``input``; longer text is refused before the call


class OpenAISynthesizer:
    name = "openai"

    def __init__(self, config: OpenAISpeechConfig, *, session: requests.Session | None = None) -> None:
        if not config.url:
            raise ConfigError("[voice.reply.openai] url: empty; set it to use the 'openai' synthesizer")
        self.url = endpoint(config.url, "audio/speech")
        self.config = config
        self.session = session or requests.Session()

    def synthesize(self, text: str, lang: str, deadline: float) -> bytes:
        if len(text) > MAX_INPUT_CHARS:
            raise SynthesisError("too_long", f"{len(text)} characters, the endpoint takes {MAX_INPUT_CHARS}")
        r = check(post(self.session, self.url, api_key=self.config.api_key, timeout_s=self.config.timeout_s,
                       deadline=deadline, error=SynthesisError, who="openai synthesizer",
                       json={"model": self.config.model, "input": text, "voice": self.config.voice,
                             "response_format": self.config.response_format}), SynthesisError)
        if not r.content:
            raise SynthesisError("bad_answer", "openai endpoint answered no audio")
        if r.headers.get("Content-Type", "").startswith("application/json"):
            raise SynthesisError("bad_answer", "openai endpoint answered JSON, not audio")
        return r.content
