"""The synthesizer chain: try each configured synthesizer in order until one gives audio WeChat can take.

The mirror of the recognizer chain (bot/voice/chain.py holds their shared loop). A synthesizer's turn is its
synthesis *and* the transcode of its audio into voice parts, so one that fails, runs out of time, or answers
audio that cannot become WeChat voice (garbage, silence, too long) hands over to the next.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from bot.config import BUILTIN_SYNTHESIZERS, Config, ConfigError
from bot.ops.metrics import SYNTHESES, SYNTHESIS_SECONDS, labelled
from bot.ops.trace import Trace, add_step
from bot.voice.audio import AudioError
from bot.voice.chain import first_success, load_member
from bot.voice.speech import SpeechAudio, SpeechTooLongError, to_voice_media
from bot.voice.synthesizers.base import Speech, SynthesisError, Synthesizer

log = logging.getLogger("bot.voice")


class SynthesizerChain:
    """``chain.speak(text) -> Speech`` (never raises): voice parts in ``fmt`` (amr or mp3), ≤ 60 s each."""

    def __init__(self, synthesizers: Sequence[Synthesizer], *, fmt: str = "amr", lang: str = "zh_CN",
                 timeout_s: float = 20.0, max_parts: int = 5) -> None:
        self.synthesizers = list(synthesizers)
        self.fmt, self.lang, self.timeout_s, self.max_parts = fmt, lang, timeout_s, max_parts

    def speak(self, text: str, *, msg_id: str = "-", lang: str | None = None, deadline: float | None = None,
              trace: Trace | None = None) -> Speech:
        """Speech for ``text`` before ``deadline`` (``time.monotonic()``; default: ``timeout_s`` from now).

        With a ``trace`` (bot/ops/trace.py) the steps go into the message's ``bot.message`` line too."""
        if not text or not text.strip():
            return Speech((), None, error="empty_text")
        lang = lang or self.lang
        deadline = deadline if deadline is not None else time.monotonic() + self.timeout_s
        steps: list[tuple[str, float]] = []

        def attempt(synthesizer: Synthesizer) -> SpeechAudio:
            if time.monotonic() >= deadline:
                raise SynthesisError("timeout", "no time left before the deadline")
            started = time.perf_counter()
            try:
                audio = synthesizer.synthesize(text, lang, deadline)
            finally:
                steps.append(("synthesize", time.perf_counter() - started))
            if not isinstance(audio, (bytes, bytearray, memoryview)):
                raise SynthesisError("bad_answer", f"synthesize() returned {type(audio).__name__}, not bytes")
            started = time.perf_counter()
            try:
                return to_voice_media(bytes(audio), self.fmt, max_parts=self.max_parts)
            except SpeechTooLongError as exc:
                raise SynthesisError("too_long", str(exc)) from None
            except AudioError as exc:
                raise SynthesisError("bad_audio", str(exc)) from None
            finally:
                steps.append(("speech_transcode", time.perf_counter() - started))

        result = first_success(self.synthesizers, attempt, kind="synthesizer", msg_id=msg_id, record=_count)
        if trace is not None:
            for name, seconds in steps:
                add_step(trace, name, seconds)
        if result.value is None:
            return Speech((), None, error=result.error or "no synthesizer configured", steps=steps)
        media = result.value
        # DEBUG: the message's bot.message line carries the steps
        log.debug("voice synthesizer=%s msg_id=%s chars=%d seconds=%.1f parts=%d input=%s", result.source, msg_id,
                  len(text), media.duration_s, len(media.parts), media.input_codec)
        return Speech(media.parts, result.source, steps=steps)


def _count(name: str, outcome: str, seconds: float) -> None:
    labelled(SYNTHESES, name, outcome).inc()
    labelled(SYNTHESIS_SECONDS, name).observe(seconds)


def build_synthesizer(name: str, config: Config) -> Synthesizer:
    """A built-in by name, or ``module:attribute`` (an instance, or a factory called with the config)."""
    reply = config.voice.reply
    if name == "openai":
        from bot.voice.synthesizers.openai import OpenAISynthesizer
        return OpenAISynthesizer(reply.openai)
    if name == "espeak":
        from bot.voice.synthesizers.espeak import EspeakSynthesizer
        return EspeakSynthesizer()
    return load_member(name, config, key="[voice.reply] synthesizers", kind="synthesizer", method="synthesize",
                       builtins=BUILTIN_SYNTHESIZERS)


class Unavailable:
    """A synthesizer that could not be built (its library missing or failing to load): every turn hands over to
    the next member, so the answer falls through the chain and finally to the text, never to the apology."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason

    def synthesize(self, text: str, lang: str, deadline: float) -> bytes:
        raise SynthesisError("unavailable", self.reason)


def build_synthesizer_chain(config: Config, *, timeout_s: float = 20.0, strict: bool = False) -> SynthesizerChain:
    """The configured chain. ``strict`` (start-up, bot.runtime.check_config): a member that cannot be built is a
    ``ConfigError`` naming the key, so no entry point starts with it. Otherwise (the chain a bot builds on first
    use) such a member is logged once and stands aside as :class:`Unavailable`."""
    reply = config.voice.reply
    members: list[Synthesizer] = []
    for i, spec in enumerate(reply.synthesizers):
        try:
            members.append(build_synthesizer(spec, config))
        except Exception as exc:  # someone's factory may raise anything
            if strict and isinstance(exc, ConfigError):
                raise
            if strict:
                raise ConfigError(f"[voice.reply] synthesizers[{i}]: building {spec!r} raised "
                                  f"{type(exc).__name__}: {exc}") from None
            log.warning("voice synthesizer=%s unavailable (%s): answers fall through to the next synthesizer, or to "
                        "text", spec, exc)
            members.append(Unavailable(spec, str(exc)))
    return SynthesizerChain(members, fmt=reply.format, lang=config.voice.lang, timeout_s=timeout_s)


__all__ = ["SynthesizerChain", "build_synthesizer", "build_synthesizer_chain"]
