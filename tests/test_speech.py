"""Synthesizer audio to WeChat voice parts (bot/voice/speech.py): real audio through PyAV, every format a
speech server answers, and long speech split at its pauses."""
from __future__ import annotations

import time
from array import array

import pytest

from bot.voice.audio import AudioError, decode_pcm, encode_pcm
from bot.voice.speech import MAX_PART_BYTES, SpeechTooLongError, to_voice_media
from bot.voice.tones import PAUSE_CHARACTERS, detect_tone, make_tone, speech_tone

TONE = 725.0
SECONDS_PER_CHAR = 0.2
# 9 sounding characters and one pause: a pause every 2 s, as a speaker breathes between phrases.
PHRASE = "打开客厅的灯好的吗，"


def long_text(seconds: float) -> str:
    return PHRASE * int(seconds / (len(PHRASE) * SECONDS_PER_CHAR))


def pauses(text: str) -> list[tuple[float, float]]:
    """Where the speech of ``text`` is silent, in seconds."""
    return [(i * SECONDS_PER_CHAR, (i + 1) * SECONDS_PER_CHAR) for i, ch in enumerate(text) if ch in PAUSE_CHARACTERS]


def heard(part_data: bytes, rate: int = 8000) -> float | None:
    pcm, _ = decode_pcm(part_data, sample_rate=rate)
    return detect_tone(pcm, rate, [TONE, 675.0, 775.0])


@pytest.mark.parametrize("source", ["mp3", "wav", "opus", "aac", "flac", "amr"])
@pytest.mark.parametrize("fmt", ["amr", "mp3"])
def test_every_synthesizer_format_becomes_wechat_voice(source: str, fmt: str) -> None:
    audio = speech_tone("打开客厅的灯，好的", TONE, fmt=source)
    speech = to_voice_media(audio, fmt)
    assert len(speech.parts) == 1
    part = speech.parts[0]
    _, info = decode_pcm(part.data, sample_rate=8000)
    expected = ("amr_nb", "amr", 8000) if fmt == "amr" else ("mp3", "mp3", 16000)
    assert (info.codec, info.container, info.sample_rate, info.channels) == (*expected, 1)
    assert part.fmt == fmt and part.content_type == ("audio/amr" if fmt == "amr" else "audio/mpeg")
    assert part.duration_s == pytest.approx(1.8, abs=0.15)  # 9 characters of 0.2 s (aac adds its priming)
    assert heard(part.data) == TONE  # the same sound, not a pitch-shifted one


@pytest.mark.parametrize("source", ["wav", "mp3"])
def test_a_150_second_answer_is_three_parts_cut_in_its_pauses(source: str) -> None:
    text = long_text(150)
    audio = speech_tone(text, TONE, fmt=source, seconds_per_char=SECONDS_PER_CHAR)
    speech = to_voice_media(audio, "amr")
    assert len(speech.parts) == 3
    assert speech.duration_s == pytest.approx(len(text) * SECONDS_PER_CHAR, abs=0.1)
    for part in speech.parts:
        _, info = decode_pcm(part.data, sample_rate=8000)
        assert part.duration_s <= 60 and info.duration_s <= 60  # what WeChat measures, too
        assert len(part.data) <= MAX_PART_BYTES
        assert heard(part.data) == TONE
    silent = pauses(text)
    cut = 0.0
    for part in speech.parts[:-1]:
        cut += part.duration_s
        assert cut > 57, "of pauses as long as each other, the latest: the longest part"
        # mp3 shifts the audio by its encoder delay (a few ms); the cut still falls inside the pause
        assert any(start - 0.01 <= cut <= end + 0.01 for start, end in silent), f"cut at {cut:.2f}s is mid-word"


def test_speech_without_any_pause_is_cut_at_the_limit() -> None:
    audio = make_tone(TONE, 130, fmt="wav")
    speech = to_voice_media(audio, "amr")
    assert [round(p.duration_s, 2) for p in speech.parts] == [59.72, 59.72, 10.56]  # the last window before 59.74 s


@pytest.mark.parametrize("audio, why", [
    (b"", "empty"),
    (b"this is not audio at all" * 40, "cannot open"),
    (encode_pcm(array("h", bytes(2 * 16000)), 16000, fmt="wav"), "no sound"),
])
def test_audio_wechat_would_reject_raises_audio_error(audio: bytes, why: str) -> None:
    with pytest.raises(AudioError, match=why):
        to_voice_media(audio)


def test_speech_longer_than_max_parts_is_refused_without_decoding_it_all() -> None:
    audio = make_tone(TONE, 200, fmt="wav")
    with pytest.raises(SpeechTooLongError, match="longer than 3 parts"):
        to_voice_media(audio, max_parts=3)
    assert len(to_voice_media(audio, max_parts=4).parts) == 4


def test_the_transcode_is_many_times_faster_than_real_time() -> None:
    audio = speech_tone(long_text(60), TONE, fmt="mp3")
    to_voice_media(audio)  # warm up the codecs
    started = time.perf_counter()
    speech = to_voice_media(audio)
    elapsed = time.perf_counter() - started
    assert speech.duration_s / elapsed > 30, f"{speech.duration_s:.0f}s of speech took {elapsed * 1000:.0f} ms"
