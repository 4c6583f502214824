"""Helpers for the voice tests: a router that shows which recognizer produced the transcript, a third-party
recognizer, a fake clock, and the module-wide sandbox fixtures.

Nothing here replaces a part of the bot: the router is an ordinary ``bot.Router``, and the speech service the
``openai`` recognizer talks to is the sandbox's own ``/v1/audio/transcriptions``.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import Context, Router
from bot.sandbox import Sandbox
from bot.voice.audio import decode_pcm

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


# -- WeChat's clock, played without waiting -------------------------------------------------------------
class FakeClock:
    """A ``clock``/``sleep`` pair where time moves only when something sleeps: give ``now`` to the sandbox's state
    and both to a recognizer chain, and a 10 s recognition window passes in milliseconds, exactly."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


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
