"""What every synthesizer shares: its error, its interface, and the chain's answer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bot.voice.chain import ChainError
from bot.voice.speech import VoicePart


class SynthesisError(ChainError):
    """A synthesizer could not produce speech; ``reason`` is a short code for logs and metrics (timeout,
    unavailable, bad_answer, too_long, ...). Raise it from your own synthesizer to hand over to the next."""


class Synthesizer(Protocol):
    """Turns text into audio bytes (mp3, wav, ogg/opus, aac or flac: told apart by content) before
    ``deadline`` (a ``time.monotonic()`` value), or raises :class:`SynthesisError`. ``lang`` is ``zh_CN`` or
    ``en_US``."""

    name: str

    def synthesize(self, text: str, lang: str, deadline: float) -> bytes: ...


@dataclass
class Speech:
    """The chain's answer: voice parts ready to upload and which synthesizer made them, or why there are none.

    ``steps`` are (name, seconds): ``synthesize`` and ``speech_transcode``, every try counted."""

    parts: tuple[VoicePart, ...]
    source: str | None
    error: str | None = None
    steps: list[tuple[str, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.parts)

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.parts)
