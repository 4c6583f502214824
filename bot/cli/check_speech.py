"""``check``'s lines for the speech synthesizers (``[voice.reply] synthesizers``): each one is tried.

A synthesizer that cannot speak shows only when an answer should be spoken: the user then gets the text (the
chain hands over), and the operator a log line per message. Trying each here — a short sentence, its audio
transcoded into WeChat voice as an answer's would be, nothing uploaded — tells before that.
"""
from __future__ import annotations

import time

from bot.config import Config, ConfigError

TEST_SENTENCES = {"zh_CN": "你好，这是一条测试语音。", "en_US": "Hello, this is a test."}

Line = tuple[bool, str, str]  # (ok, name, detail), as a router's check answers


def check_synthesizers(config: Config) -> list[Line]:
    """One line per synthesizer, in chain order (one line when voice replies are off)."""
    reply = config.voice.reply
    if reply.when == "never":
        return [(True, "voice replies", f'off ([voice.reply] when = "never"): synthesizers '
                                        f'{", ".join(reply.synthesizers) or "(none)"} not tried; a handler\'s '
                                        "ctx.reply_speech falls back to text if they fail")]
    return [try_synthesizer(config, spec) for spec in reply.synthesizers]


def try_synthesizer(config: Config, spec: str) -> Line:
    from bot.voice.audio import AudioError
    from bot.voice.speech import SpeechTooLongError, to_voice_media
    from bot.voice.synthesizers import SynthesisError, build_synthesizer
    reply, name = config.voice.reply, f"synthesizer {spec}"
    timeout_s = reply.openai.timeout_s if spec == "openai" else 10.0
    started = time.monotonic()
    try:
        audio = build_synthesizer(spec, config).synthesize(TEST_SENTENCES.get(config.voice.lang, TEST_SENTENCES["zh_CN"]),
                                                           config.voice.lang, started + timeout_s)
        media = to_voice_media(bytes(audio), reply.format)
    except SynthesisError as exc:
        return False, name, f"failed ({exc}): answers fall through to the next synthesizer, else to text"
    except (AudioError, SpeechTooLongError) as exc:
        return False, name, f"its audio cannot become WeChat voice ({exc}): answers fall through to the next"
    except ConfigError as exc:
        return False, name, str(exc)
    except Exception as exc:  # someone's synthesizer may raise anything
        return False, name, f"raised {type(exc).__name__}: {exc}"
    return True, name, (f"ready: a test sentence became {media.duration_s:.1f} s of {reply.format} voice in "
                        f"{time.monotonic() - started:.2f} s")
