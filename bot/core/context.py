"""What a handler receives: the message, its text (typed or transcribed) and reply helpers."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from wechatpy import replies
from wechatpy.messages import BaseMessage

from bot.core.envelope import wire_event, wire_type
from bot.core.services import Services
from bot.core.stream import StreamedText
from bot.core.text import cdata, clean_text


class cached_property:  # noqa: N801 (named after what it replaces)
    """``functools.cached_property`` without the lock Python 3.11's takes on every first access (3.12 dropped
    it): a context belongs to one message, and computing its value twice would give the same value."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn, self.__doc__ = fn, fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.fn(instance)
        return value


_TEXT_REPLY = ("<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[{}]]></Content>\n"
               "<FromUserName><![CDATA[{}]]></FromUserName>\n<ToUserName><![CDATA[{}]]></ToUserName>\n"
               "<CreateTime>{}</CreateTime>\n</xml>")


def render_text_reply(message: BaseMessage, content: str) -> str:
    """``replies.TextReply(message=message, content=content).render()``, formatted at once when the message has
    both user names (as every push has): wechatpy's reply object reads each field through a descriptor."""
    data = getattr(message, "_data", None)
    if isinstance(message, BaseMessage) and isinstance(data, dict) and not hasattr(message, "agent"):
        ours, theirs = data.get("ToUserName"), data.get("FromUserName")
        if ours and theirs and isinstance(ours, str) and isinstance(theirs, str) and isinstance(content, str):
            return _TEXT_REPLY.format(content, ours, theirs, int(time.time()))
    return replies.TextReply(message=message, content=content).render()


@dataclass(frozen=True)
class SpeechReply:
    """``ctx.reply_speech(text)``: answer with ``text`` spoken (and written too with ``[voice.reply] with_text``)."""

    text: str


Reply: TypeAlias = str | replies.BaseReply | StreamedText | SpeechReply | None


class BadReply(TypeError):
    """A handler answered something that is not a reply (an int, a dict…); names the handler."""


@dataclass
class Context:
    """One message on its way through the routers.

    ``text`` is the text message's content or the voice message's transcript, so an intent written once
    answers both; ``transcript_source`` says where a transcript came from (``push``, ``wechat``,
    ``openai``…) and is ``"text"`` for typed text. ``text`` is normalized for matching (bot/core/normalize.py);
    ``original_text`` is what was typed or recognized. ``session`` is the user's conversation state, kept
    in the store between messages (bot/core/session.py).
    """

    message: BaseMessage
    text: str | None = None
    transcript_source: str | None = None
    msg_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    session_loader: Callable[[], dict[str, Any]] | None = field(default=None, repr=False)
    _session: dict[str, Any] | None = field(default=None, repr=False)
    original_text: str | None = None
    config: Any = None  # the bot's Config, set by the webhook
    services: Services | None = None  # the store and WeChat client, when the bot was built by bot.runtime
    deadline: float | None = None  # time.monotonic() by which the answer should be ready
    answered_by: str = field(default="", repr=False)  # the route whose answer this is (set by the router)
    # How to redo this message's change on a session another message of the user saved meanwhile (it changes
    # the dict it is given); without it that other change wins and this one is dropped (bot/core/session.py).
    session_merge: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)

    @property
    def session(self) -> dict[str, Any]:
        """The user's conversation state, read from the store on first use (most messages never touch it)."""
        if self._session is None:
            self._session = self.session_loader() if self.session_loader else {}
        return self._session

    @session.setter
    def session(self, value: dict[str, Any]) -> None:
        if self._session is None and self.session_loader:
            self.session_loader()  # read what is stored first: saving compares with it
        self._session = value

    @property
    def client(self) -> Any:
        """The WeChat API client (``ctx.client.voice.translate(...)``) for handlers that call WeChat."""
        client = getattr(self.services, "client", None)
        if client is None:
            raise RuntimeError("no WeChat API client: this bot was not built by bot.runtime.build_webhook")
        return client

    def time_left(self) -> float:
        """Seconds left of the reply budget, never negative (infinite when no deadline was set)."""
        return math.inf if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    @property
    def openid(self) -> str:
        """Who wrote: the user's openid (an Official Account) or UserID (a WeCom app)."""
        return self.message.source

    @property
    def account(self) -> str:
        """The account the message came to: its ``[accounts.NAME]`` name, ``""`` for a ``[wechat]`` config."""
        info = getattr(self.config, "account", None)
        return getattr(info, "name", "")

    @property
    def channel(self) -> str:
        """Where the user wrote: ``official_account`` (公众号) or ``wecom_app`` (a WeCom self-built app)."""
        info = getattr(self.config, "account", None)
        return getattr(info, "kind", "official_account")

    @cached_property
    def type(self) -> str:
        """WeChat's ``MsgType``, lowercased: ``text``, ``voice``, ``event``… and types wechatpy does not know by
        their own name (``ctx.message`` is then wechatpy's ``UnknownMessage``)."""
        return wire_type(self.message)

    @cached_property
    def event(self) -> str | None:
        """WeChat's ``Event``, lowercased (``click``, ``subscribe``, ``subscribe_msg_popup_event``,
        ``publishjobfinish``…), None for messages; a subscription through a QR code is ``subscribe``."""
        return wire_event(self.message)

    def reply_text(self, content: str) -> replies.TextReply:
        """A text reply; characters XML cannot carry are dropped (WeChat would show an error for them)."""
        return replies.TextReply(message=self.message, content=cdata(clean_text(content)))

    def reply_speech(self, text: str) -> SpeechReply:
        """Answer with ``text`` as speech, whatever ``[voice.reply] when`` says (text if speech fails)."""
        return SpeechReply(text)

    def stream(self, chunks: Iterable[str]) -> StreamedText:
        """An answer still being written (e.g. a language model's tokens): the user gets the sentences written
        by the deadline at once and the rest as a continuation (README, "Delivery")."""
        return StreamedText(chunks)

    def reply_image(self, media_id: str) -> replies.ImageReply:
        return replies.ImageReply(message=self.message, media_id=media_id)

    def reply_voice(self, media_id: str) -> replies.VoiceReply:
        return replies.VoiceReply(message=self.message, media_id=media_id)

    def reply_articles(self, articles: list[dict[str, str]]) -> replies.ArticlesReply:
        return replies.ArticlesReply(message=self.message, articles=articles)

    def render(self, reply: Reply) -> str | None:
        """Turn a handler's answer into reply XML (``None`` means nothing to say)."""
        if reply is None:
            return None
        if isinstance(reply, str):
            content = clean_text(reply)
            if not content.strip():  # nothing visible left: say nothing rather than send an empty text
                return None
            return render_text_reply(self.message, cdata(content))  # what self.reply_text(reply) renders
        if not isinstance(reply, replies.BaseReply):
            raise BadReply(f"{self.answered_by or 'a handler'} returned {type(reply).__name__} {repr(reply)[:40]}; "
                           "expected str, a wechatpy reply or None")
        return reply.render()
