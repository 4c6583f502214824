"""Answering with voice: a text answer becomes speech, WeChat voice media, and voice parts of the answer.

``[voice.reply] when`` says which answers are spoken ("voice": answers to voice messages; "always"), and a
handler can ask for it whatever the setting (``return ctx.reply_speech(text)``). Synthesis (bot/voice/
synthesizers/), transcoding into ≤ 60 s parts (bot/voice/speech.py) and the upload (bot/wechat/media.py) all
run in the message's job, so delivery carries the parts like any other answer — passive when they are ready
within the budget, else a later try, customer service or pickup. Any failure falls back to the text answer,
logged with the message id and the reason: the user never gets nothing because speech failed.
"""
from __future__ import annotations

import logging
from typing import Any

from bot.config import Config
from bot.core.answer import Part, Text, Voice
from bot.core.context import Context, SpeechReply
from bot.core.text import clean_text
from bot.ops.clock import SYSTEM, Clock
from bot.ops.trace import Trace
from bot.voice.synthesizers.chain import SynthesizerChain, build_synthesizer_chain
from bot.wechat.errors import WeChatAPIError
from bot.wechat.materials import MaterialReleases
from bot.wechat.media import VoiceUploader

log = logging.getLogger("bot.voice")


class Speaker:
    """Turns a text answer into voice parts for one bot (the chain and the uploader built on first use)."""

    def __init__(self, config: Config, client: Any, store: Any, clock: Clock = SYSTEM) -> None:
        self.config, self.client, self.store = config, client, store
        self._chain: SynthesizerChain | None = None
        self.releases = None if client is None or store is None else MaterialReleases(
            client, store, clock, appid=config.wechat.appid, grace_s=config.voice.reply.material_grace_s)

    def wanted(self, ctx: Context, reply: object) -> bool:
        when = self.config.voice.reply.when
        if isinstance(reply, SpeechReply):
            return True
        return isinstance(reply, str) and (when == "always" or (when == "voice" and ctx.type == "voice"))

    def spoken_only(self, ctx: Context) -> bool:
        """A text answer to this message is heard, not read (its streamed sentences are not shown as text)."""
        return self.wanted(ctx, "") and not self.config.voice.reply.with_text

    @property
    def chain(self) -> SynthesizerChain:
        if self._chain is None:
            self._chain = build_synthesizer_chain(self.config)
        return self._chain

    def speak(self, ctx: Context, text: str, trace: Trace) -> tuple[Part, ...] | None:
        """The answer as voice parts (the text first with ``with_text``); None when speech failed (the caller
        answers with the text)."""
        if self.client is None or self.store is None:
            log.warning("voice reply msg_id=%s: no WeChat API client to upload speech; answering with text",
                        ctx.msg_id)
            return None
        speech = self.chain.speak(text, msg_id=str(ctx.msg_id), trace=trace)
        trace.synthesizer = speech.source
        if not speech.ok:
            log.warning("voice reply msg_id=%s failed (%s); answering with text", ctx.msg_id, speech.error)
            trace.synthesis_error = speech.error
            return None
        uploader = VoiceUploader(self.client, self.store, appid=self.config.wechat.appid, releases=self.releases)
        parts: list[Part] = []
        try:
            for piece in speech.parts:
                media_id, permanent = uploader.upload(piece.data, piece.fmt, trace=trace)
                parts.append(Voice(media_id, permanent))
        except WeChatAPIError as exc:
            log.warning("voice reply msg_id=%s: upload failed (%s); answering with text", ctx.msg_id, exc)
            trace.synthesis_error = f"upload:{exc.errcode}"
            for part in parts:
                if isinstance(part, Voice) and part.permanent:
                    uploader.release(part.media_id)
            return None
        trace.speech_s = round(speech.duration_s, 1)
        if len(parts) > 1:
            trace.speech_parts = len(parts)
        if self.config.voice.reply.with_text and text.strip():
            parts.insert(0, Text(clean_text(text)))
        return tuple(parts)
