"""The recognizer chain: try each configured recognizer in order until one produces text."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from bot.config import Config
from bot.ops.metrics import RECOGNIZER_FAILURES, RECOGNIZER_SUCCESSES, labelled
from bot.voice.recognizers.base import RecognitionError, Recognizer, Transcript, VoiceClip, log


class RecognizerChain:
    """A transcriber for the webhook: ``chain(push_fields, msg_id) -> Transcript`` (never raises)."""

    def __init__(self, recognizers: Sequence[Recognizer], download: Callable[[str], bytes], *,
                 timeout_s: float = 25.0) -> None:
        self.recognizers = list(recognizers)
        self.download = download
        self.timeout_s = timeout_s

    def __call__(self, data: dict[str, Any], msg_id: str) -> Transcript:
        clip = VoiceClip.from_push(data, msg_id, self.download)
        deadline = time.monotonic() + self.timeout_s
        reasons: list[str] = []
        for recognizer in self.recognizers:
            started = time.perf_counter()
            try:
                text = recognizer.recognize(clip, deadline)
            except RecognitionError as exc:
                reasons.append(f"{recognizer.name}:{exc.reason}")
                labelled(RECOGNIZER_FAILURES, recognizer.name, exc.reason).inc()
                level = logging.DEBUG if exc.reason == "no_push_recognition" else logging.WARNING
                log.log(level, "voice recognizer=%s msg_id=%s failed reason=%s detail=%s ms=%.1f", recognizer.name,
                        clip.msg_id, exc.reason, exc.detail, (time.perf_counter() - started) * 1000)
                continue
            except Exception as exc:  # a third-party recognizer's bug must not lose the message
                reasons.append(f"{recognizer.name}:crashed")
                labelled(RECOGNIZER_FAILURES, recognizer.name, "crashed").inc()
                log.exception("voice recognizer=%s msg_id=%s crashed: %s", recognizer.name, clip.msg_id,
                              type(exc).__name__)
                continue
            labelled(RECOGNIZER_SUCCESSES, recognizer.name).inc()
            # DEBUG: the message's bot.message line names the recognizer and every step's duration
            log.debug("voice recognizer=%s msg_id=%s transcript_chars=%d ms=%.1f", recognizer.name, clip.msg_id,
                      len(text), (time.perf_counter() - started) * 1000)
            return Transcript(text, recognizer.name, steps=clip.steps)
        return Transcript(None, None, error=",".join(reasons) or "no recognizer configured", steps=clip.steps)


def build_recognizer(name: str, config: Config, client: Any) -> Recognizer | None:
    """A built-in by name, or ``module:attribute`` (an instance, or a factory called with the config)."""
    voice = config.voice
    if name == "push":
        from bot.voice.recognizers.push import PushRecognizer
        return PushRecognizer() if voice.use_push_recognition else None
    if name == "wechat":
        from bot.voice.recognizers.wechat import WeChatRecognizer
        return WeChatRecognizer(client, lang=voice.lang, window_s=voice.window_s,
                                poll_initial_s=voice.poll_initial_s, poll_max_s=voice.poll_max_s)
    if name == "openai":
        from bot.voice.recognizers.openai import OpenAIRecognizer
        return OpenAIRecognizer(voice.openai, lang=voice.lang)
    from bot.config import ConfigError
    if ":" not in name:
        raise ConfigError(f"[voice] recognizers: unknown recognizer {name!r} (built-in: push, wechat, openai; "
                          "or 'module:attribute')")
    import importlib
    module_name, _, attr = name.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"[voice] recognizers: cannot load {name!r} ({exc})") from None
    # A class has a ``recognize`` attribute too: it is a factory (called with the config), not an instance.
    is_instance = hasattr(obj, "recognize") and not isinstance(obj, type)
    recognizer = obj if is_instance or not callable(obj) else obj(config)
    if not hasattr(recognizer, "recognize"):
        raise ConfigError(f"[voice] recognizers: {name!r} gave {type(recognizer).__name__}, which has no recognize()")
    recognizer.name = getattr(recognizer, "name", name)
    return recognizer


def build_chain(config: Config, client: Any) -> RecognizerChain:
    recognizers = [r for r in (build_recognizer(n, config, client) for n in config.voice.recognizers) if r]
    return RecognizerChain(recognizers, lambda media_id: media_bytes(client, media_id),
                           timeout_s=config.voice.window_s + 15.0)


def media_bytes(client: Any, media_id: str) -> bytes:
    """wechatpy's ``media.download`` answers the raw response for media (errors are raised as typed errors)."""
    from bot.wechat.errors import TransportError
    result = client.media.download(media_id)
    content = getattr(result, "content", None)
    if content is None:
        raise TransportError("media/get", None, "JSON answer instead of media")
    return content
