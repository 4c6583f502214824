"""Test tones: real voice files that stand in for speech, and telling them apart again.

The sandbox (and the tests) cannot recognize speech, so a distinct sine tone stands for each sentence: it is
encoded as a real AMR/mp3/wav file with :func:`make_tone`, survives a correct transcode, and
:func:`detect_tone` finds it again in the decoded samples (:func:`bot.voice.audio.decode_pcm`).
"""
from __future__ import annotations

import math
import operator
from array import array
from collections.abc import Iterable, Sequence

from bot.voice.audio import ENCODINGS, encode_pcm

__all__ = ["make_tone", "encode_pcm", "speech_tone", "PAUSE_CHARACTERS", "tone_strengths", "detect_tone"]

# --------------------------------------------------------------------------------------------- synthesis

_TONE_FORMATS = ENCODINGS  # amr, mp3, wav, opus, aac, flac (bot/voice/audio.py)


def _sine(frequency: float, duration_s: float, sample_rate: int, amplitude: float) -> array:
    """s16 samples of a sine; computes one exact period and tiles it when the tone is periodic in samples."""
    n = max(0, int(round(duration_s * sample_rate)))
    peak = max(0.0, min(1.0, amplitude)) * 32767
    step = 2 * math.pi * frequency / sample_rate
    if float(frequency).is_integer() and frequency > 0:
        period = sample_rate // math.gcd(sample_rate, int(frequency))
    else:
        period = n
    if period >= n:
        return array("h", (int(round(peak * math.sin(step * i))) for i in range(n)))
    one = array("h", (int(round(peak * math.sin(step * i))) for i in range(period)))
    out = one * (n // period + 1)
    del out[n:]
    return out


def make_tone(
    frequency: float,
    duration_s: float,
    *,
    fmt: str = "amr",
    sample_rate: int | None = None,
    amplitude: float = 0.5,
    channels: int = 1,
) -> bytes:
    """Encode a pure sine tone as a real voice file: ``amr`` (AMR-NB 8 kHz), ``mp3`` or ``wav`` (16 kHz), or
    ``opus``, ``aac``, ``flac`` (what speech synthesizers answer).

    Tests and the sandbox use distinct tones as stand-ins for distinct utterances: the frequency survives
    a correct transcode and is detectable with :func:`detect_tone`.
    """
    if fmt not in _TONE_FORMATS:
        raise ValueError(f"fmt must be one of {sorted(_TONE_FORMATS)}, not {fmt!r}")
    if duration_s <= 0:
        raise ValueError("duration_s must be positive")
    rate = sample_rate or _TONE_FORMATS[fmt][2]
    mono = _sine(frequency, duration_s, rate, amplitude)
    if channels == 1:
        return encode_pcm(mono, rate, fmt=fmt)
    both = array("h", bytes(4 * len(mono)))
    both[0::2] = mono
    both[1::2] = mono
    return encode_pcm(both, rate, fmt=fmt, channels=2)


# Characters that are a pause in :func:`speech_tone`: punctuation and spaces, where a speaker breathes.
PAUSE_CHARACTERS = frozenset(" \t\n，。、；：？！…,.;:?!~—-（）()「」“”\"'")


def speech_tone(
    text: str, frequency: float, *, fmt: str = "mp3", seconds_per_char: float = 0.2,
    sample_rate: int | None = None, amplitude: float = 0.5,
) -> bytes:
    """A stand-in for synthesized speech of ``text``: ``seconds_per_char`` of the tone per character, and as much
    silence for each of :data:`PAUSE_CHARACTERS`, so long answers have the pauses a splitter looks for and the
    tone still tells which text it was. Any format of :data:`bot.voice.audio.ENCODINGS`.
    """
    if fmt not in ENCODINGS:
        raise ValueError(f"fmt must be one of {sorted(ENCODINGS)}, not {fmt!r}")
    if not text or seconds_per_char <= 0:
        raise ValueError("text must not be empty and seconds_per_char must be positive")
    rate = sample_rate or ENCODINGS[fmt][2]
    slot = int(round(seconds_per_char * rate))
    out = _sine(frequency, slot * len(text) / rate, rate, amplitude)  # one continuous sine: no clicks
    quiet = bytes(2 * slot)
    for i, ch in enumerate(text):
        if ch in PAUSE_CHARACTERS:
            out[i * slot:(i + 1) * slot] = array("h", quiet)
    return encode_pcm(out, rate, fmt=fmt)


# --------------------------------------------------------------------------------------------- tone detection


def _window(samples: Sequence[int], sample_rate: int, window_s: float) -> Sequence[int]:
    n = min(len(samples), max(1, int(window_s * sample_rate)))
    start = (len(samples) - n) // 2
    return samples[start : start + n]


def tone_strengths(
    samples: Sequence[int], sample_rate: int, frequencies: Iterable[float], *, window_s: float = 0.25
) -> dict[float, float]:
    """Goertzel power at each frequency, normalized by the window's energy (a pure tone scores ~1.0).

    Only ``window_s`` seconds from the middle are examined, so the cost is bounded whatever the clip length.
    """
    freqs = list(frequencies)
    x = _window(samples, sample_rate, window_s)
    n = len(x)
    if n == 0:
        return {f: 0.0 for f in freqs}
    mean = sum(x) / n
    x = [v - mean for v in x]  # type: ignore[misc]  # drop DC once, outside the per-frequency loops
    energy = sum(map(operator.mul, x, x))
    if energy <= 0:
        return {f: 0.0 for f in freqs}
    result: dict[float, float] = {}
    for f in freqs:
        coeff = 2.0 * math.cos(2.0 * math.pi * f / sample_rate)
        s1 = s2 = 0.0
        for v in x:  # Goertzel recursion; bounded by the window, not the clip
            s1, s2 = v + coeff * s1 - s2, s1
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        result[f] = max(0.0, 2.0 * power / (n * energy))
    return result


def detect_tone(
    samples: Sequence[int],
    sample_rate: int,
    frequencies: Iterable[float],
    min_ratio: float = 0.3,
    *,
    min_rms: float = 100.0,
    window_s: float = 0.25,
) -> float | None:
    """The candidate frequency that dominates the clip, or None (silence, noise, speech, unknown tone).

    Dominates means: at least ``min_ratio`` of the window's energy and three times the runner-up.
    """
    freqs = list(frequencies)
    if not freqs:
        return None
    x = _window(samples, sample_rate, window_s)
    if not x or math.sqrt(sum(map(operator.mul, x, x)) / len(x)) < min_rms:
        return None
    strengths = tone_strengths(x, sample_rate, freqs, window_s=window_s)
    ranked = sorted(strengths.items(), key=lambda kv: kv[1], reverse=True)
    best_f, best = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    if best >= min_ratio and best >= 3 * runner_up:
        return best_f
    return None
