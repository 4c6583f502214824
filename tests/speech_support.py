"""Third-party synthesizers for the tests, loaded by module path (``speech_support:ToneSynthesizer``) as a
user's own would be. Each makes real audio (or really fails); none stands in for a part of the bot."""
from __future__ import annotations

from array import array
from typing import Any

from bot.voice.audio import encode_pcm
from bot.voice.synthesizers import SynthesisError
from bot.voice.tones import speech_tone

TONE = 1225.0  # on the sandbox's clip grid, away from the tones it hands out first


class ToneSynthesizer:
    """A factory (a class): the chain calls it with the config. Speaks every text as one wav tone."""

    name = "tone"

    def __init__(self, config: Any) -> None:
        self.lang = config.voice.lang
        self.calls: list[tuple[str, str]] = []

    def synthesize(self, text: str, lang: str, deadline: float) -> bytes:
        self.calls.append((text, lang))
        return speech_tone(text, TONE, fmt="wav")


class _Silent:
    name = "silent"

    def synthesize(self, text: str, lang: str, deadline: float) -> bytes:
        return encode_pcm(array("h", bytes(2 * 16000)), 16000, fmt="wav")  # 1 s of digital silence


class _Refusing:
    name = "refusing"

    def synthesize(self, text: str, lang: str, deadline: float) -> bytes:
        raise SynthesisError("unavailable", "quota used up")


class _Broken:
    name = "broken"

    def synthesize(self, text: str, lang: str, deadline: float) -> bytes:
        return {"not": "bytes"}[text]  # a bug: KeyError


silent = _Silent()
refusing = _Refusing()
broken = _Broken()
