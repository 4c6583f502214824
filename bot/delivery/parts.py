"""Reply XML in parts: a long text cut to WeChat's limit, and several answers shown in one passive reply.

A passive reply is one message; a text message holds at most ``[reply] max_text_bytes``. A long answer is
split at sentence ends (bot/core/text.py) into parts that each keep the original reply's envelope; answers
kept for pickup are joined with the new message's answer into one text when they fit.
"""
from __future__ import annotations

from collections.abc import Sequence

import xmltodict
from wechatpy import replies

from bot.core.speech import PART_SEPARATOR
from bot.core.text import cdata, split_text, utf8_len

SEPARATOR = "\n\n"  # between answers shown in one reply


def fields(reply_xml: str) -> dict[str, str]:
    return xmltodict.parse(reply_xml)["xml"]


def text_of(reply_xml: str) -> str | None:
    """The content of a text reply; None for any other kind (image, voice, news, ...)."""
    if "<MsgType><![CDATA[text]]></MsgType>" not in reply_xml and "<MsgType>text</MsgType>" not in reply_xml:
        return None
    return fields(reply_xml).get("Content") or ""


def as_text_reply(like_xml: str, content: str) -> str:
    """A text reply with ``like_xml``'s sender, receiver and time, saying ``content``."""
    f = fields(like_xml)
    return replies.TextReply(source=f.get("FromUserName"), target=f.get("ToUserName"),
                             time=int(f.get("CreateTime") or 0), content=cdata(content)).render()


def split_reply(reply_xml: str, limit: int, marker: str | None = None) -> list[str]:
    """The messages an answer takes: the job's own parts (voice parts, joined by ``PART_SEPARATOR``), and
    each text cut to at most ``limit`` bytes of content. ``marker`` (e.g. "（未完，回复任意文字继续）") ends every
    part of a text but the last, within the limit: the parts will be shown one per message the user sends."""
    if PART_SEPARATOR in reply_xml:
        return [part for piece in reply_xml.split(PART_SEPARATOR) for part in split_reply(piece, limit, marker)]
    if utf8_len(reply_xml) <= limit:  # the envelope alone is longer than the content: nothing to cut
        return [reply_xml]
    text = text_of(reply_xml)
    if text is None or utf8_len(text) <= limit:
        return [reply_xml]
    room = limit - (utf8_len(marker) if marker else 0)
    pieces = split_text(text, room)
    if marker:
        pieces = [p + marker for p in pieces[:-1]] + pieces[-1:]
    return [as_text_reply(reply_xml, p) for p in pieces]


def join_texts(texts: Sequence[str]) -> str:
    return SEPARATOR.join(texts)


def remainder(reply_xml: str, shown: int) -> str | None:
    """The reply for what a try has not shown yet of a streamed text answer; None when nothing is left."""
    text = text_of(reply_xml)
    if text is None:
        return reply_xml
    rest = text[shown:].strip()
    return as_text_reply(reply_xml, rest) if rest else None
