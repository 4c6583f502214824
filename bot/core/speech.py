"""Answering with voice: a text answer becomes speech, WeChat voice media, and voice reply XMLs.

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

from wechatpy import replies

from bot.config import Config
from bot.core.context import Context, SpeechReply
from bot.ops.trace import Trace
from bot.voice.synthesizers.chain import SynthesizerChain, build_synthesizer_chain
from bot.wechat.errors import WeChatAPIError
from bot.wechat.media import VoiceUploader

log = logging.getLogger("bot.voice")

# Between the reply XMLs of an answer in several messages (voice parts). U+001E cannot occur in XML 1.0, so
# it never appears inside a reply; delivery splits on it (bot/delivery/parts.py).
PART_SEPARATOR = "\x1e"


class Speaker:
    """Turns a text answer into voice reply XMLs for one bot (the chain and the uploader built on first use)."""

    def __init__(self, config: Config, client: Any, store: Any) -> None:
        self.config, self.client, self.store = config, client, store
        self._chain: SynthesizerChain | None = None

    def wanted(self, ctx: Context, reply: object) -> bool:
        when = self.config.voice.reply.when
        if isinstance(reply, SpeechReply):
            return True
        return isinstance(reply, str) and (when == "always" or (when == "voice" and ctx.type == "voice"))

    @property
    def chain(self) -> SynthesizerChain:
        if self._chain is None:
            self._chain = build_synthesizer_chain(self.config)
        return self._chain

    def speak(self, ctx: Context, text: str, trace: Trace) -> str | None:
        """The answer as voice: reply XMLs joined by :data:`PART_SEPARATOR` (the text first with ``with_text``);
        None when speech failed (the caller answers with the text)."""
        if self.client is None or self.store is None:
            log.warning("voice reply msg_id=%s: no WeChat API client to upload speech; answering with text",
                        ctx.msg_id)
            return None
        speech = self.chain.speak(text, msg_id=str(ctx.msg_id), trace=trace)
        trace["synthesizer"] = speech.source
        if not speech.ok:
            log.warning("voice reply msg_id=%s failed (%s); answering with text", ctx.msg_id, speech.error)
            trace["synthesis_error"] = speech.error
            return None
        uploader = VoiceUploader(self.client, self.store, appid=self.config.wechat.appid)
        xmls, materials = [], []
        try:
            for part in speech.parts:
                media_id, permanent = uploader.upload(part.data, part.fmt, trace=trace)
                if permanent:
                    materials.append(media_id)
                xmls.append(replies.VoiceReply(message=ctx.message, media_id=media_id).render())
        except WeChatAPIError as exc:
            log.warning("voice reply msg_id=%s: upload failed (%s); answering with text", ctx.msg_id, exc)
            trace["synthesis_error"] = f"upload:{exc.errcode}"
            for media_id in materials:
                uploader.release(media_id)
            return None
        trace["speech_s"] = round(speech.duration_s, 1)
        if len(xmls) > 1:
            trace["speech_parts"] = len(xmls)
        if materials:
            trace["materials"] = materials  # deleted once delivered (bot/delivery/)
        if self.config.voice.reply.with_text:
            xmls.insert(0, ctx.render(text) or "")
        return PART_SEPARATOR.join(x for x in xmls if x)
