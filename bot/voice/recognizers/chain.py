"""The recognizer chain: try each configured recognizer in order until one produces text."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bot.config import Config
from bot.ops.metrics import RECOGNIZER_FAILURES, RECOGNIZER_SUCCESSES, labelled
from bot.voice.chain import first_success, load_member
from bot.voice.recognizers.base import Recognizer, Transcript, VoiceClip, log


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
        result = first_success(self.recognizers, lambda r: r.recognize(clip, deadline), kind="recognizer",
                               msg_id=msg_id, record=_count, quiet=frozenset({"no_push_recognition"}))
        if result.source is None:
            return Transcript(None, None, error=result.error or "no recognizer configured", steps=clip.steps)
        text = result.value or ""
        # DEBUG: the message's bot.message line names the recognizer and every step's duration
        log.debug("voice recognizer=%s msg_id=%s transcript_chars=%d", result.source, msg_id, len(text))
        return Transcript(text, result.source, steps=clip.steps)


def _count(name: str, outcome: str, seconds: float) -> None:
    if outcome == "ok":
        labelled(RECOGNIZER_SUCCESSES, name).inc()
    else:
        labelled(RECOGNIZER_FAILURES, name, outcome).inc()


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
    return load_member(name, config, key="[voice] recognizers", kind="recognizer", method="recognize",
                       builtins=("push", "wechat", "openai"))


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
