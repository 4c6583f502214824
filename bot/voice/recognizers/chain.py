"""The recognizer chain: try each configured recognizer in order until one produces text.

The recognizers share the message's time. WeChat gives a message 5 s per try; a fallback after WeChat's own
recognizers (``push``, ``wechat``) can answer within the first try only if WeChat's recognition does not use it
up, so when one is configured those two get ``[voice] wechat_share_s`` of the message's time (counted from when it
arrived) and the rest goes to the fallback. Without a fallback WeChat's recognition keeps its whole window.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bot.config import Config
from bot.ops.clock import SYSTEM, Clock
from bot.ops.metrics import RECOGNIZER_FAILURES, RECOGNIZER_SECONDS, RECOGNIZER_SUCCESSES, labelled
from bot.voice.chain import first_success, load_member
from bot.voice.recognizers.base import Recognizer, Transcript, Try, VoiceClip, log

WECHAT_OWN = frozenset({"push", "wechat"})  # WeChat's own recognition, which WeChat is retiring


class RecognizerChain:
    """A transcriber for the webhook: ``chain(push_fields, msg_id[, started]) -> Transcript`` (never raises).

    ``timeout_s``: the whole chain's time; ``wechat_share_s``: what WeChat's own recognizers may use of it when a
    fallback follows them (None: no limit); ``tries_s``: how long WeChat's tries of a message last — a job that
    starts after them has no try to fit (its answer goes late anyway), so its chain counts from its start: a busy
    bot still hears the message; ``clock``/``sleep``: the chain's time, injectable for tests."""

    def __init__(self, recognizers: Sequence[Recognizer], download: Callable[[str], bytes], *,
                 timeout_s: float = 25.0, wechat_share_s: float | None = None, tries_s: float = 15.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.recognizers = list(recognizers)
        self.download = download
        self.timeout_s, self.wechat_share_s, self.tries_s = timeout_s, wechat_share_s, tries_s
        self.clock, self.sleep = clock, sleep

    def deadlines(self, start: float) -> list[float]:
        """Each recognizer's deadline for a message that arrived at ``start``: the chain's end, or for WeChat's own
        recognizers with a fallback after them, ``start + wechat_share_s``."""
        end, share = start + self.timeout_s, self.wechat_share_s
        out = []
        for i, recognizer in enumerate(self.recognizers):
            fallback_after = any(r.name not in WECHAT_OWN for r in self.recognizers[i + 1:])
            if share is not None and recognizer.name in WECHAT_OWN and fallback_after:
                out.append(min(end, start + share))
            else:
                out.append(end)
        return out

    def __call__(self, data: dict[str, Any], msg_id: str, started: float | None = None) -> Transcript:
        """``started``: when the message arrived, a ``clock`` value (default: now), so that a job started late (a
        later try, a worker taking it over) still fits WeChat's clock."""
        clip = VoiceClip.from_push(data, msg_id, self.download, clock=self.clock, sleep=self.sleep)
        now = self.clock()
        start = now if started is None or now - started > self.tries_s else started
        deadline = {id(r): d for r, d in zip(self.recognizers, self.deadlines(start))}
        tries: list[Try] = []

        def record(name: str, outcome: str, seconds: float) -> None:
            tries.append((name, outcome, seconds))
            _count(name, outcome, seconds)

        result = first_success(self.recognizers, lambda r: r.recognize(clip, deadline[id(r)]), kind="recognizer",
                               msg_id=msg_id, record=record, quiet=frozenset({"no_push_recognition"}),
                               clock=self.clock)
        if result.source is None:
            return Transcript(None, None, error=result.error or "no recognizer configured", steps=clip.steps,
                              tries=tries)
        text = result.value or ""
        # DEBUG: the message's bot.message line names the recognizer and every step's duration
        log.debug("voice recognizer=%s msg_id=%s transcript_chars=%d", result.source, msg_id, len(text))
        return Transcript(text, result.source, steps=clip.steps, tries=tries)


def _count(name: str, outcome: str, seconds: float) -> None:
    labelled(RECOGNIZER_SECONDS, name, outcome).observe(seconds)
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
        return OpenAIRecognizer(voice.openai, lang=voice.lang, hints=intent_keywords(config))
    return load_member(name, config, key="[voice] recognizers", kind="recognizer", method="recognize",
                       builtins=("push", "wechat", "openai"))


def build_chain(config: Config, client: Any, clock: Clock = SYSTEM) -> RecognizerChain:
    recognizers = [r for r in (build_recognizer(n, config, client) for n in config.voice.recognizers) if r]
    return RecognizerChain(recognizers, lambda media_id: media_bytes(client, media_id),
                           timeout_s=config.voice.window_s + 15.0, wechat_share_s=config.voice.wechat_share_s,
                           tries_s=config.reply.tries * config.reply.wechat_timeout_s,
                           clock=clock.monotonic, sleep=clock.sleep)


def intent_keywords(config: Config) -> list[str]:
    """The ``[[intents]]`` keywords, in order and once each: the words the bot knows, for ``prompt_intents``."""
    return list(dict.fromkeys(k.strip() for intent in config.intents for k in intent.keywords if k.strip()))


def media_bytes(client: Any, media_id: str) -> bytes:
    """wechatpy's ``media.download`` answers the raw response for media (errors are raised as typed errors)."""
    from bot.wechat.errors import TransportError
    result = client.media.download(media_id)
    content = getattr(result, "content", None)
    if content is None:
        raise TransportError("media/get", None, "JSON answer instead of media")
    return content
