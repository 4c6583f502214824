"""Helpers for the voice tests: a fake OpenAI-compatible transcription server and a router that shows
which recognizer produced the transcript.

Nothing here replaces a part of the bot: the fake server is a real HTTP server on loopback that decodes
the mp3 it is sent (so a broken upload fails), and the router is an ordinary ``bot.Router``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from bot import Context, Router
from bot.sandbox import FREQUENCY_GRID, Sandbox
from bot.voice.audio import AudioError, decode_pcm
from bot.voice.tones import detect_tone

AUDIO = Path(__file__).resolve().parent / "fixtures" / "audio"
XML = Path(__file__).resolve().parent / "fixtures"

# -- a router that shows the transcript's source ------------------------------------------------------
source_router = Router("source")


@source_router.fallback
def _show_source(ctx: Context) -> str | None:
    """``"<source>|<transcript>"`` for anything with text; nothing otherwise (so the bot says not_understood).

    ``original_text`` is the transcript as the recognizer gave it (``text`` is normalized for matching)."""
    return f"{ctx.transcript_source}|{ctx.original_text}" if ctx.original_text else None


def parse_source(content: str | None) -> tuple[str, str]:
    assert content and "|" in content, f"expected 'source|text', got {content!r}"
    source, _, text = content.partition("|")
    return source, text


# -- a third-party recognizer ------------------------------------------------------------------------
class MyRecognizer:
    """A recognizer from outside the package, named as ``voice_support:MyRecognizer`` in ``[voice] recognizers``.

    The chain calls the class with the config. It really transcodes the clip (the chain's shared download
    and transcode), checks the result is mp3 at 16 kHz mono, and answers a fixed sentence per language.
    """

    name = "mine"
    TEXT = {"zh_CN": "打开卧室的灯", "en_US": "turn off the bedroom lights"}

    def __init__(self, config: Any) -> None:
        self.text = self.TEXT[config.voice.lang]

    def recognize(self, clip: Any, deadline: float) -> str:
        _, info = decode_pcm(clip.mp3().data, sample_rate=16000)
        assert (info.codec, info.sample_rate, info.channels) == ("mp3", 16000, 1), info
        return self.text


# -- a fake OpenAI-compatible /v1/audio/transcriptions -------------------------------------------------
class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class FakeOpenAI:
    """``POST /v1/audio/transcriptions`` as OpenAI (and self-hosted whisper servers) answer it.

    The text is the sentence whose tone the audio carries (``text_for(frequency)``, e.g. the sandbox's
    clip table), so a transcode that breaks the audio gets a wrong answer. ``status`` forces an HTTP error
    and ``delay_s`` makes the endpoint slow; every request is recorded in ``requests``.
    """

    api_key: str = "sk-test-key"
    text_for: Callable[[float | None], str] = lambda freq: ""
    status: int = 200
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = self._make_app()
        self._server: BaseWSGIServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeOpenAI:
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_Quiet)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _make_app(self) -> Flask:
        app = Flask("fake_openai")

        @app.post("/v1/audio/transcriptions")
        def transcriptions() -> Any:
            record: dict[str, Any] = {"auth": request.headers.get("Authorization"),
                                      "model": request.form.get("model"), "language": request.form.get("language")}
            self.requests.append(record)
            if self.delay_s:
                time.sleep(self.delay_s)
            if record["auth"] != f"Bearer {self.api_key}":
                return jsonify(error={"message": "Incorrect API key provided", "type": "invalid_request_error"}), 401
            if self.status != 200:
                return jsonify(error={"message": "The server had an error", "type": "server_error"}), self.status
            upload = request.files.get("file")
            if upload is None or not record["model"]:
                return jsonify(error={"message": "file and model are required"}), 400
            data = upload.read()
            try:
                pcm, info = decode_pcm(data, sample_rate=16000, max_seconds=60)
            except AudioError as exc:
                return jsonify(error={"message": f"Invalid file format: {exc}"}), 400
            record.update(codec=info.codec, sample_rate=info.sample_rate, channels=info.channels,
                          filename=upload.filename, bytes=len(data))
            if (info.codec, info.sample_rate, info.channels) != ("mp3", 16000, 1):
                return jsonify(error={"message": f"expected mp3 16 kHz mono, got {info}"}), 400
            return jsonify(text=self.text_for(detect_tone(pcm, 16000, FREQUENCY_GRID)))

        return app


def sandbox_fixtures(appid: str, secret: str, latency: float, window: float, **settings: Any) -> tuple[Any, Any]:
    """A module-wide real sandbox and an autouse fixture that resets it (calls, faults, uploads) and its
    settings before each test. Use as ``sandbox, clean = sandbox_fixtures(APPID, SECRET, 0.1, 1.0)``."""

    @pytest.fixture(scope="module")
    def sandbox() -> Iterator[Sandbox]:
        with Sandbox(appid=appid, appsecret=secret, recognition_latency_s=latency, window_s=window) as sb:
            yield sb

    @pytest.fixture(autouse=True)
    def clean(sandbox: Sandbox) -> Iterator[None]:
        sandbox.reset(settings=True)  # also what a test played (a retired recognition, another account kind)
        sandbox.configure(recognition_latency_s=latency, window_s=window, token_expires_in=7200,
                          token_grace_s=0.0, **settings)
        yield

    return sandbox, clean
