"""Long speech is cut into WeChat voice parts in its pauses (bot/voice/pauses.py): real espeak-ng speech and tones
separated by short silences go through ``to_voice_media``, and each test checks where the cuts fall against where
the speech is silent, that no part is over WeChat's limits, and that no audio is lost or added."""
from __future__ import annotations

import math
import time
from array import array

import pytest

from bot.voice.audio import decode_pcm
from bot.voice.pauses import split_points
from bot.voice.speech import MAX_PART_BYTES, SpeechAudio, to_voice_media
from bot.voice.synthesizers.espeak import EspeakSynthesizer
from bot.voice.tones import detect_tone, speech_tone

LIMIT_S = 59.74  # 60 s less the mp3 headroom, on the 20 ms grid
FRAME_S = {"amr": 0.02, "mp3": 0.036}  # AMR-NB's frame; an MPEG-2 layer III frame at 16 kHz (576 samples)
RATES = {"amr": 8000, "mp3": 16000}

STORIES = {
    "zh_CN": "从前有一座山，山上有一座庙，庙里住着一个老和尚和一个小和尚。"
             "每天早上，小和尚都要下山挑水，一路上唱着歌，看着路边的花草和树林。"
             "有一天，他在河边遇到了一只受伤的小鹿，小鹿的腿被石头划破了。"
             "小和尚把小鹿抱回庙里，老和尚用草药给它包好了伤口。"
             "过了几个星期，小鹿的伤好了，它每天都跟着小和尚去河边挑水。"
             "秋天到了，山上的树叶变成了红色和黄色，风一吹，叶子就像蝴蝶一样飞舞。",
    "en_US": "Once upon a time there was a mountain, and on the mountain there stood a small temple. "
             "An old monk and a young monk lived in the temple, far away from the noise of the town. "
             "Every morning the young monk walked down to the river to fetch water, singing as he went. "
             "One day he found a wounded deer by the river, its leg cut by a sharp stone. "
             "He carried the deer back to the temple, and the old monk dressed its wound with herbs. "
             "A few weeks later the deer was well again, and it followed the young monk to the river every day. ",
}


def silences(pcm: array, rate: int, min_s: float) -> list[tuple[float, float]]:
    """Runs of digital silence (samples that are exactly 0) at least ``min_s`` long, in seconds."""
    runs, start = [], None
    for i, v in enumerate([*pcm, 1]):
        if v == 0:
            start = i if start is None else start
        else:
            if start is not None and i - start >= min_s * rate:
                runs.append((start / rate, i / rate))
            start = None
    return runs


def check_parts(speech: SpeechAudio, fmt: str, input_s: float) -> list[float]:
    """WeChat's limits hold for every part, and the parts together are the whole speech: their lengths add up to
    the input's to the sample, and decoded, each part to its length padded to whole codec frames plus one (the
    last frame is padded with silence, and AMR-NB's encoder flushes one more after a part's last samples).
    Returns the cuts, in seconds."""
    rate, frame = RATES[fmt], FRAME_S[fmt]
    assert sum(p.duration_s for p in speech.parts) == pytest.approx(input_s, abs=1 / rate)
    decoded, padded = 0.0, 0.0
    for part in speech.parts:
        pcm, info = decode_pcm(part.data, sample_rate=rate)
        assert (info.codec, info.sample_rate) == ({"amr": "amr_nb", "mp3": "mp3"}[fmt], rate)
        assert part.duration_s <= LIMIT_S and info.duration_s <= 60 and len(part.data) <= MAX_PART_BYTES
        decoded += info.duration_s
        padded += math.ceil(part.duration_s / frame - 1e-9) * frame + frame
    assert input_s <= decoded + 1 / rate and decoded <= padded + 1e-6, (decoded, padded)
    cuts, at = [], 0.0
    for part in speech.parts[:-1]:
        at += part.duration_s
        cuts.append(at)
    return cuts


def latest_before(pauses: list[tuple[float, float]], limit: float) -> tuple[float, float]:
    return [p for p in pauses if p[1] <= limit][-1]


@pytest.mark.parametrize("lang, fmt", [("zh_CN", "amr"), ("zh_CN", "mp3"), ("en_US", "amr")])
def test_espeak_speech_is_cut_between_sentences(lang: str, fmt: str) -> None:
    """espeak-ng leaves 300-340 ms of digital silence after a full stop, ~150 ms after a comma, 30-40 ms in a
    word's stops. Each cut falls in the last sentence end before its limit, 6-8 s back here, although commas
    and stops lie closer to the limit."""
    text = STORIES[lang] * 3  # 18 sentences: 134 s of Mandarin, 85 s of English
    wav = EspeakSynthesizer().synthesize(text, lang, time.monotonic() + 30)
    pcm, info = decode_pcm(wav, sample_rate=22050)
    sentence_ends = silences(pcm, 22050, 0.25)
    assert len(sentence_ends) == text.count("。") + text.count(". ") - 1  # every sentence end, nothing else
    speech = to_voice_media(wav, fmt)
    cuts = check_parts(speech, fmt, len(pcm) / 22050)
    assert len(speech.parts) == (3 if lang == "zh_CN" else 2)
    start = 0.0
    for cut in cuts:
        end = latest_before(sentence_ends, start + LIMIT_S)
        assert end[0] <= cut <= end[1], f"cut at {cut:.2f}s, the last sentence ends {end[0]:.2f}-{end[1]:.2f}s"
        start = cut


# Tones at 40 ms a character (bot.voice.tones.speech_tone): a word is 0.4 s of tone; between words 40 ms of
# silence (a stop's closure), 160 ms after a comma, 320 ms at a sentence's end, as espeak-ng speaks.
WORD, GAP, COMMA, STOP = "音" * 10, " ", "，" * 4, "。" * 8
CLAUSE = GAP.join([WORD] * 4)  # 1.72 s
SENTENCE = COMMA.join([CLAUSE] * 7) + STOP  # 13.32 s: its end lies 6-7 s before each limit, commas closer
TONE = 725.0


def tone_pauses(text: str, seconds_per_char: float, min_chars: int) -> list[tuple[float, float]]:
    """Where the tone speech of ``text`` is silent for at least ``min_chars`` characters, in seconds."""
    runs, start = [], None
    for i, ch in enumerate(text + WORD[0]):
        if ch != WORD[0]:
            start = i if start is None else start
        else:
            if start is not None and i - start >= min_chars:
                runs.append((start * seconds_per_char, i * seconds_per_char))
            start = None
    return runs


@pytest.mark.parametrize("source, fmt", [("wav", "amr"), ("mp3", "amr"), ("wav", "mp3")])
def test_tone_speech_is_cut_at_sentence_ends_not_at_commas_or_gaps(source: str, fmt: str) -> None:
    text = SENTENCE * 10  # 133.2 s
    speech = to_voice_media(speech_tone(text, TONE, fmt=source, seconds_per_char=0.04), fmt)
    cuts = check_parts(speech, fmt, len(text) * 0.04)
    assert len(speech.parts) == 3
    sentence_ends, any_pause = tone_pauses(text, 0.04, len(STOP)), tone_pauses(text, 0.04, 1)
    start = 0.0
    for cut in cuts:
        end = latest_before(sentence_ends, start + LIMIT_S)
        assert latest_before(any_pause, start + LIMIT_S)[0] > end[1] + 5  # commas and gaps lie closer to the limit
        # mp3 shifts the audio by its encoder delay (a few ms); the cut still falls inside the pause
        assert end[0] - 0.01 <= cut <= end[1] + 0.01, f"cut at {cut:.2f}s, the sentence ends {end[0]:.2f}s"
        start = cut
    for part in speech.parts:  # the same sound in each part: nothing shifted in pitch
        pcm, _ = decode_pcm(part.data, sample_rate=8000)
        assert detect_tone(pcm, 8000, [TONE, 675.0, 775.0], window_s=2.0) == TONE


def test_speech_nearly_max_parts_long_still_fits_in_max_parts() -> None:
    """179 s of speech in parts of 59.74 s leaves 0.26 s to give away: the sentence ends 6-7 s before each limit
    are out of reach (cut there, the speech would need a fourth part)."""
    text = SENTENCE * 13 + COMMA.join([CLAUSE] * 3) + STOP
    speech = to_voice_media(speech_tone(text, TONE, fmt="wav", seconds_per_char=0.04), "amr", max_parts=3)
    assert len(speech.parts) == 3, [p.duration_s for p in speech.parts]
    check_parts(speech, "amr", len(text) * 0.04)


RATE = 8000
LOUD = array("h", [8000, -8000] * (RATE // 2))  # 1 s, -2 dBFS


def quiet(seconds: float, amplitude: int = 0) -> array:
    return array("h", [amplitude, -amplitude] * int(seconds * RATE / 2))


def test_a_long_pause_further_back_beats_a_short_one_near_the_limit() -> None:
    # speech to 5.0 s, a 0.4 s pause (a sentence's end), speech, a 0.12 s pause at 8.5 s (a comma), speech to 12.5 s
    pcm = LOUD * 5 + quiet(0.4) + LOUD * 3 + quiet(0.12) + LOUD * 4
    cut = split_points(pcm, RATE, part_samples=9 * RATE, lookback_samples=10 * RATE)[1]
    assert 5.0 * RATE <= cut <= 5.4 * RATE and cut % 160 == 0
    # pauses nearly as long as the longest are as good: the latest of them makes the longest part
    pcm = LOUD * 5 + quiet(0.4) + LOUD * 3 + quiet(0.36) + LOUD * 4
    assert 8.4 * RATE <= split_points(pcm, RATE, 9 * RATE, 10 * RATE)[1] <= 8.76 * RATE


def test_a_pause_that_runs_past_the_limit_is_weighed_whole() -> None:
    # a comma's 0.16 s at 5 s; a sentence's end at 8.9-9.3 s, of which only 0.1 s lies before the 9 s limit
    pcm = LOUD * 5 + quiet(0.16) + LOUD * 3 + LOUD[:5920] + quiet(0.4) + LOUD * 3
    assert split_points(pcm, RATE, part_samples=9 * RATE, lookback_samples=10 * RATE)[1] == 9 * RATE


def test_a_long_silence_is_cut_just_before_the_speech_resumes() -> None:
    pcm = LOUD * 3 + quiet(4.0) + LOUD * 4  # silent 3.0-7.0 s
    cut = split_points(pcm, RATE, part_samples=9 * RATE, lookback_samples=10 * RATE)[1]
    assert cut == int(6.8 * RATE)  # the next part begins with 0.2 s of it


def test_noise_far_below_the_speech_is_a_pause_a_soft_sound_is_not() -> None:
    """Quiet means 35 dB under the speech level: -2 dBFS speech, a -42 dBFS hiss between sentences at 4 s, a
    -30 dBFS sound (a soft consonant) at 8 s: the hiss is the pause."""
    pcm = LOUD * 4 + quiet(0.3, 260) + LOUD * 4 + quiet(0.3, 1030) + LOUD * 2
    cut = split_points(pcm, RATE, part_samples=9 * RATE, lookback_samples=10 * RATE)[1]
    assert 4.0 * RATE <= cut <= 4.3 * RATE


def test_split_points_pick_the_quietest_window_on_a_20ms_grid() -> None:
    soft = quiet(0.1, 300)  # quieter than speech but not a pause (-29 dB)
    # 0-6 s loud, a silent pause at 6.0-6.2 s, loud, a soft patch at 8.2-8.3 s, loud up to 10.3 s
    pcm = LOUD * 6 + quiet(0.2) + LOUD * 2 + soft + LOUD * 2
    cuts = split_points(pcm, RATE, part_samples=9 * RATE, lookback_samples=5 * RATE)
    assert cuts[0] == 0 and cuts[-1] == len(pcm) and len(cuts) == 3
    assert 6.0 * RATE <= cuts[1] <= 6.2 * RATE and cuts[1] % 160 == 0  # the silence wins over the soft patch
    no_pause = split_points(pcm, RATE, part_samples=9 * RATE, lookback_samples=RATE)
    assert 8.2 * RATE <= no_pause[1] <= 8.3 * RATE  # no pause in the last second: its quietest 40 ms


def test_cuts_reach_back_only_as_far_as_max_parts_allows() -> None:
    """Two parts of 9 s for 17.6 s of speech leave 0.4 s to give away: the long pause 2.6-3 s before the limit
    is out of reach, the short one 0.2-0.4 s before it is not."""
    # a pause at 6.0-6.4 s (a sentence's end), one at 8.6-8.8 s (a comma); the first part's limit is 9 s
    sentence = LOUD * 6 + quiet(0.4) + LOUD * 2 + LOUD[:1600] + quiet(0.2) + LOUD * 8 + LOUD[:6400]
    assert len(sentence) == int(17.6 * RATE)
    free = split_points(sentence, RATE, 9 * RATE, 10 * RATE)
    assert 6.0 * RATE <= free[1] <= 6.4 * RATE and len(free) == 4  # three parts
    bounded = split_points(sentence, RATE, 9 * RATE, 10 * RATE, max_parts=2)
    assert len(bounded) == 3 and 8.5 * RATE <= bounded[1] <= 9 * RATE


def test_short_speech_is_one_part_and_nothing_is_split() -> None:
    assert split_points(array("h", [1000] * 800), 8000, 8000 * 60, 8000 * 5) == [0, 800]
