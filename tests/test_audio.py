"""bot.voice.audio and bot.voice.tones: real AMR/Speex/AMR-WB clips in, 16 kHz mono mp3 out, tones preserved, garbage refused."""
from __future__ import annotations

import io
import logging
import random
import re
import time
from array import array
from pathlib import Path

import av
import pytest

from bot.voice.audio import AudioError, Transcoded, decode_pcm, transcode_to_mp3
from bot.voice.tones import detect_tone, encode_pcm, make_tone, tone_strengths

FIXTURES = Path(__file__).parent / "fixtures" / "audio"
GRID = [325.0 + 50.0 * k for k in range(60)]  # the sandbox's clip tones


def probe(data: bytes) -> tuple[str, str, int, int, float]:
    """(container, codec, rate, channels, seconds) of encoded audio, straight from PyAV."""
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(s))
        return c.format.name, s.codec_context.codec.canonical_name, s.sample_rate, s.codec_context.layout.nb_channels, \
            samples / s.sample_rate


@pytest.fixture(scope="module")
def amr_3s() -> bytes:
    return make_tone(1025, 3.0)


def test_amr_to_mp3_is_16k_mono_mp3(amr_3s: bytes) -> None:
    assert amr_3s.startswith(b"#!AMR\n")
    out = transcode_to_mp3(amr_3s)
    assert isinstance(out, Transcoded)
    container, codec, rate, channels, seconds = probe(out.data)
    assert (container, codec, rate, channels) == ("mp3", "mp3", 16000, 1)
    assert out.input_codec == "amr_nb"
    assert out.trimmed is False
    assert out.duration_s == pytest.approx(3.0, abs=0.1)
    assert out.source_duration_s == pytest.approx(out.duration_s)
    assert seconds == pytest.approx(3.0, abs=0.1)
    assert len(out.data) < 1_000_000


@pytest.mark.parametrize("freq", [325.0, 1775.0, 3275.0])
def test_tone_survives_amr_to_mp3(freq: float) -> None:
    out = transcode_to_mp3(make_tone(freq, 1.0))
    pcm, info = decode_pcm(out.data)
    assert (info.codec, info.sample_rate, info.channels) == ("mp3", 16000, 1)
    assert detect_tone(pcm, 16000, GRID) == freq


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if p.suffix in {".spx", ".awb"}))
def test_committed_fixtures_transcode_and_keep_their_tone(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    assert len(data) < 10_000, "fixtures stay tiny"
    freq = float(re.search(r"_(\d+)hz_", name).group(1))
    out = transcode_to_mp3(data)
    assert out.input_codec == ("amr_wb" if name.endswith(".awb") else "speex")
    assert out.duration_s == pytest.approx(2.0, abs=0.1)
    pcm, info = decode_pcm(out.data)
    assert (info.codec, info.sample_rate, info.channels) == ("mp3", 16000, 1)
    assert detect_tone(pcm, 16000, [freq - 50, freq, freq + 50, freq * 2]) == freq


def test_speex_fixtures_exist_in_both_bands() -> None:
    rates = {decode_pcm((FIXTURES / n).read_bytes())[1].sample_rate
             for n in ("tone_725hz_2s_nb.spx", "tone_1525hz_2s_wb.spx")}
    assert rates == {8000, 16000}


@pytest.mark.parametrize("data", [
    b"",
    b"this is not audio at all " * 40,
    b"#!AMR\n",  # a header and no frames
    b"OggS" + bytes(200),
    bytes(range(256)) * 16,
    b"\x89PNG\r\n\x1a\n" + bytes(300),
], ids=["empty", "text", "amr-header-only", "ogg-zeros", "bytes", "png"])
def test_undecodable_audio_raises_audio_error(data: bytes) -> None:
    with pytest.raises(AudioError) as exc:
        transcode_to_mp3(data)
    assert str(exc.value)
    with pytest.raises(AudioError):
        decode_pcm(data)


def test_truncated_amr_still_decodes_what_is_there(amr_3s: bytes) -> None:
    out = transcode_to_mp3(amr_3s[: len(amr_3s) // 2])
    assert out.duration_s == pytest.approx(1.5, abs=0.1)


def test_long_clip_is_trimmed_to_max_bytes_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    clip = make_tone(1025, 40.0)
    caplog.set_level(logging.WARNING, logger="bot.audio")
    out = transcode_to_mp3(clip, max_bytes=50_000)
    assert len(out.data) <= 50_000
    assert out.trimmed is True
    assert out.source_duration_s == pytest.approx(40.0, abs=0.1)
    assert 10.0 < out.duration_s < 12.5  # 32 kbit/s = 4000 B/s: ~12.5 s fit, minus headroom
    assert probe(out.data)[4] == pytest.approx(out.duration_s, abs=0.1)
    records = [r for r in caplog.records if r.name == "bot.audio" and r.levelno == logging.WARNING]
    assert len(records) == 1
    assert "40.0" in records[0].getMessage() and f"{out.duration_s:.2f}" in records[0].getMessage()


def test_headroom_is_small_and_output_fits_exactly_sized_limits() -> None:
    clip = make_tone(725, 20.0)
    full = transcode_to_mp3(clip)
    assert not full.trimmed
    out = transcode_to_mp3(clip, max_bytes=len(full.data))  # the same size: fits, maybe a frame short
    assert len(out.data) <= len(full.data)
    assert out.duration_s > 19.0


def test_an_overshoot_is_corrected_by_a_second_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.voice.audio
    monkeypatch.setattr(bot.voice.audio, "_MP3_HEADROOM_FRAMES", -30)  # first estimate deliberately too long
    monkeypatch.setattr(bot.voice.audio, "_MP3_HEADROOM_BYTES", 0)
    out = transcode_to_mp3(make_tone(725, 20.0), max_bytes=40_000)
    assert len(out.data) <= 40_000 and out.trimmed


def test_max_bytes_too_small_raises(amr_3s: bytes) -> None:
    with pytest.raises(AudioError, match="too small"):
        transcode_to_mp3(amr_3s, max_bytes=500)


def test_stereo_44k_wav_becomes_mono_16k() -> None:
    out = transcode_to_mp3(make_tone(1525, 1.0, fmt="wav", sample_rate=44100, channels=2))
    assert probe(out.data)[:4] == ("mp3", "mp3", 16000, 1)
    assert out.input_codec == "pcm_s16le"
    assert detect_tone(decode_pcm(out.data)[0], 16000, GRID) == 1525


def test_transcode_is_much_faster_than_real_time() -> None:
    clip = make_tone(1025, 10.0)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        transcode_to_mp3(clip)
        timings.append(time.perf_counter() - started)
    assert 10.0 / min(timings) > 10, f"only {10.0 / min(timings):.0f}x real time"  # ~200x on an idle core


def test_make_tone_formats() -> None:
    amr = make_tone(700, 0.5)
    assert amr.startswith(b"#!AMR\n")
    assert probe(amr)[:4] == ("amr", "amr_nb", 8000, 1)
    assert probe(make_tone(700, 0.5, fmt="mp3"))[:4] == ("mp3", "mp3", 16000, 1)
    assert probe(make_tone(700, 0.5, fmt="wav", sample_rate=8000))[:4] == ("wav", "pcm_s16le", 8000, 1)
    assert probe(make_tone(700, 0.5, fmt="mp3", channels=2))[3] == 2
    with pytest.raises(ValueError):
        make_tone(700, 1.0, fmt="ogg")
    with pytest.raises(ValueError):
        make_tone(700, 1.0, fmt="amr", sample_rate=16000)


def test_decode_pcm_reports_the_input_and_bounds_work(amr_3s: bytes) -> None:
    pcm, info = decode_pcm(amr_3s, sample_rate=16000, max_seconds=1.0)
    assert isinstance(pcm, array) and pcm.typecode == "h"
    assert len(pcm) == 16000
    assert (info.codec, info.container, info.sample_rate, info.channels) == ("amr_nb", "amr", 8000, 1)
    full, info = decode_pcm(amr_3s, sample_rate=8000)
    assert len(full) == pytest.approx(24000, abs=400)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)


def test_tone_strengths_and_detection_refuse_what_is_not_a_tone() -> None:
    rate = 16000
    tone, _ = decode_pcm(make_tone(1025, 1.0, fmt="wav"))
    strengths = tone_strengths(tone, rate, [975, 1025, 1075])
    assert strengths[1025] == pytest.approx(1.0, abs=0.05)
    assert strengths[975] < 0.01 and strengths[1075] < 0.01
    assert detect_tone(tone, rate, [975, 1075]) is None  # its own tone is not a candidate
    assert detect_tone(array("h", bytes(2 * rate)), rate, GRID) is None  # silence
    rng = random.Random(7)
    noise = array("h", (rng.randint(-8000, 8000) for _ in range(rate)))
    assert detect_tone(noise, rate, GRID) is None
    a, _ = decode_pcm(make_tone(725, 1.0, fmt="wav"))
    b, _ = decode_pcm(make_tone(1525, 1.0, fmt="wav"))
    both = array("h", ((x + y) // 2 for x, y in zip(a, b)))
    assert detect_tone(both, rate, GRID) is None  # two equal tones: neither dominates
    assert detect_tone(tone, rate, []) is None


def test_pitch_shifted_clip_matches_no_grid_tone() -> None:
    """8 kHz audio mislabeled as 16 kHz doubles every tone; the grid is built so that lands on nothing."""
    pcm8k, _ = decode_pcm(make_tone(1025, 1.0), sample_rate=8000)
    shifted = encode_pcm(pcm8k, 16000, fmt="mp3")
    pcm, _ = decode_pcm(shifted)
    assert detect_tone(pcm, 16000, GRID) is None
    assert detect_tone(pcm, 16000, [2050.0]) == 2050.0
