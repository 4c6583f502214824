"""An answer in the messages WeChat accepts: long texts cut to the limit, and several texts shown in one.

A passive reply is one message; a text message holds at most ``[reply] max_text_bytes``. A long text part
is split at sentence ends (bot/core/text.py); answers kept for pickup are joined with the new message's
answer into one text when they fit.
"""
from __future__ import annotations

from collections.abc import Sequence

from bot.core.answer import Answer, Part, Text
from bot.core.text import split_text, utf8_len

SEPARATOR = "\n\n"  # between answers shown in one reply


def split(answer: Answer, limit: int, marker: str | None = None) -> list[Part]:
    """The messages an answer takes: each part, its texts cut to at most ``limit`` bytes. ``marker`` (e.g.
    "（未完，回复任意文字继续）") ends every piece of a cut text but its last, within the limit: the pieces will
    be shown one per message the user sends."""
    messages: list[Part] = []
    for part in answer.parts:
        if not isinstance(part, Text) or utf8_len(part.content) <= limit:
            messages.append(part)
            continue
        pieces = split_text(part.content, limit - (utf8_len(marker) if marker else 0))
        if marker:
            pieces = [p + marker for p in pieces[:-1]] + pieces[-1:]
        messages.extend(Text(p) for p in pieces)
    return messages


def join_texts(texts: Sequence[str]) -> str:
    return SEPARATOR.join(texts)


def remainder(answer: Answer, seen: str) -> Answer | None:
    """What tries have not shown yet of a streamed answer whose beginning ``seen`` went out; None when nothing is
    left. An answer that does not begin with ``seen`` (its job was run again after a take-over, and wrote other
    words) is the whole answer: the user reads one run's answer whole rather than two runs' halves."""
    if not answer.parts or not isinstance(answer.parts[0], Text) or not answer.parts[0].content.startswith(seen):
        return answer or None
    rest = answer.parts[0].content[len(seen):].strip()
    parts = ((Text(rest),) if rest else ()) + answer.parts[1:]
    return Answer(parts) if parts else None
