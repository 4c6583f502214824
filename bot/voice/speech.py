"""Synthesized speech to WeChat voice media: AMR-NB 8 kHz (or mp3 16 kHz), ≤ 60 s and ≤ 2 MB per part.

Synthesizers answer mp3, wav, ogg/opus, aac or flac; what it is is told from the bytes (PyAV's probing), never
from what was asked for. Everything runs in-process through PyAV: Debian's ffmpeg cannot encode AMR, a
frequent failure of bots that shell out.

Speech longer than a part is cut in a pause of the last 10 s before each limit, the longest there (a sentence's
end rather than a comma's), so no sentence is split while a pause lies within reach (bot/voice/pauses.py). The
audio is decoded once, straight to the output rate; only the look-back windows are examined sample by sample,
and each part is encoded once.
"""
from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass

from bot.voice.audio import AudioError, decode_pcm, encode_pcm
from bot.voice.pauses import LOOKBACK_S, block_samples, split_points

log = logging.getLogger("bot.audio")

__all__ = ["VoicePart", "SpeechAudio", "SpeechTooLongError", "to_voice_media", "MAX_PART_S", "MAX_PART_BYTES"]

MAX_PART_S = 60.0  # WeChat: voice media ≤ 60 s ...
MAX_PART_BYTES = 2_000_000  # ... and ≤ 2 MB
# Kept free below 60 s for mp3's encoder delay and padding, and whatever rounding WeChat's check does.
_MARGIN_S = 0.25
_RATES = {"amr": 8000, "mp3": 16000}
_CONTENT_TYPES = {"amr": "audio/amr", "mp3": "audio/mpeg"}


class SpeechTooLongError(AudioError):
    """The speech needs more than ``max_parts`` parts: more voice messages than a user should get."""


@dataclass(frozen=True)
class VoicePart:
    """One voice media file as WeChat takes it: ``fmt`` is ``amr`` or ``mp3``."""

    data: bytes
    fmt: str
    duration_s: float

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.fmt]

    @property
    def filename(self) -> str:
        return f"voice.{self.fmt}"


@dataclass(frozen=True)
class SpeechAudio:
    """The parts of one answer, in order, and what the synthesizer's audio was."""

    parts: tuple[VoicePart, ...]
    input_codec: str
    input_container: str

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.parts)


def to_voice_media(audio: bytes, fmt: str = "amr", *, max_part_s: float = MAX_PART_S,
                   max_part_bytes: int = MAX_PART_BYTES, lookback_s: float = LOOKBACK_S,
                   max_parts: int = 5) -> SpeechAudio:
    """Transcode synthesizer audio (any container PyAV probes) into WeChat voice parts, each cut in a pause of the
    ``lookback_s`` before its limit when there is one.

    Raises :class:`AudioError` for audio that cannot be decoded or holds no sound (a synthesizer that answered
    garbage or silence), and :class:`SpeechTooLongError` past ``max_parts`` parts.
    """
    if fmt not in _RATES:
        raise ValueError(f"fmt must be 'amr' or 'mp3', not {fmt!r}")
    rate = _RATES[fmt]
    block = block_samples(rate)
    part_samples = int((max_part_s - _MARGIN_S) * rate) // block * block  # on the cuts' 20 ms grid
    if part_samples <= 0:
        raise ValueError(f"max_part_s must exceed {_MARGIN_S}s")
    # one sample past the limit is enough to know it is too long; decoding stops there
    limit_s = max_parts * (max_part_s - _MARGIN_S) + 1 / rate
    pcm, info = decode_pcm(audio, sample_rate=rate, max_seconds=limit_s)
    if len(pcm) > max_parts * part_samples:
        raise SpeechTooLongError(f"speech is longer than {max_parts} parts of {max_part_s:g}s "
                                 f"({info.duration_s:.1f}s of {info.codec})")
    if not _audible(pcm):
        raise AudioError(f"no sound in {info.duration_s:.1f}s of {info.codec} audio")
    cuts = split_points(pcm, rate, part_samples, int(lookback_s * rate), max_parts)
    parts = []
    for start, end in zip(cuts, cuts[1:]):
        data = encode_pcm(pcm[start:end], rate, fmt=fmt, fast=True)
        if len(data) > max_part_bytes:  # cannot happen at these bit rates (60 s of AMR is 92 kB): say so if it does
            raise AudioError(f"a {(end - start) / rate:.1f}s part is {len(data)} bytes, over {max_part_bytes}")
        parts.append(VoicePart(data, fmt, (end - start) / rate))
    if len(parts) > 1:
        log.debug("speech split into %d parts: %s s", len(parts), ",".join(f"{p.duration_s:.2f}" for p in parts))
    return SpeechAudio(tuple(parts), info.codec, info.container)


def _audible(pcm: array, threshold: int = 64) -> bool:
    """Any sample louder than ``threshold`` (of 32767): digital silence, or near it, is no answer."""
    return bool(pcm) and (max(pcm) > threshold or min(pcm) < -threshold)
