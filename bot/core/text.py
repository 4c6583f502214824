"""Text WeChat can show: characters XML 1.0 allows, and answers cut to its byte limit at sentence ends.

WeChat shows "该公众号提供的服务出现故障" for a reply with a control character in it (an invisible one is
enough) and for a text over its limit (2048 UTF-8 bytes of content); ``message/custom/send`` answers 45002.
"""
from __future__ import annotations

import re

# XML 1.0 allows tab, newline and carriage return below U+0020, and no surrogates, U+FFFE or U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
SENTENCE_ENDS = "。！？!?.;；\n"


def clean_text(text: str) -> str:
    """``text`` without the characters XML 1.0 does not allow."""
    return _NOT_XML.sub("", text)


def cdata(text: str) -> str:
    """Text safe inside wechatpy's CDATA sections: a ``]]>`` in a user's words cannot end the section."""
    return text.replace("]]>", "]]]]><![CDATA[>")


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def split_text(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-8 bytes, each cut after the last sentence end before the
    limit (else at the last whole character: never inside a UTF-8 sequence); ``[text]`` when it fits."""
    if limit < 4:
        raise ValueError(f"limit must be at least 4 bytes (one character), got {limit}")
    pieces, rest = [], text
    while utf8_len(rest) > limit:
        head = rest.encode("utf-8")[:limit].decode("utf-8", "ignore")  # whole characters only
        cut = max(head.rfind(end) for end in SENTENCE_ENDS) + 1
        if cut < len(head) // 4:  # no sentence end, or only one near the start: cut at the limit instead
            cut = len(head)
        piece = head[:cut].rstrip()
        pieces.append(piece or head[:cut])
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces
