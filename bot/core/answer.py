"""Answers as values: what a message's answer is, from the handler through delivery to the envelope.

An :class:`Answer` is the messages the user should see, in order — each a typed part: :class:`Text`,
:class:`Voice` (WeChat voice media; ``permanent`` material is released after delivery), :class:`Image`, or
:class:`Rendered` (a wechatpy reply this project does not model: articles, music, video — its XML as the
handler's reply object rendered it, shown passively only). Delivery cuts, joins and routes parts; only the
envelope renders a part as WeChat's reply XML (bot/core/envelope.py) and only customer service as its JSON
(bot/delivery/customer_service.py). A delivery record stores an answer as JSON (:meth:`Answer.to_json`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True)
class Text:
    content: str


@dataclass(frozen=True)
class Image:
    media_id: str


@dataclass(frozen=True)
class Voice:
    media_id: str
    permanent: bool = False  # permanent material (accounts without temporary media): released once delivered


@dataclass(frozen=True)
class Rendered:
    """A reply of a kind delivery does not model, as its XML (``kind`` is its ``MsgType``)."""

    kind: str
    xml: str


Part: TypeAlias = Text | Image | Voice | Rendered


@dataclass(frozen=True)
class Answer:
    """The parts of one message's answer, in order; empty: nothing to say (WeChat gets ``success``)."""

    parts: tuple[Part, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.parts)

    def to_json(self) -> list[dict[str, Any]]:
        return [part_to_json(p) for p in self.parts]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]] | None) -> Answer:
        return cls(tuple(part_from_json(d) for d in data or ()))

    @classmethod
    def text(cls, content: str) -> Answer:
        return cls((Text(content),))


def part_to_json(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"text": part.content}
    if isinstance(part, Voice):
        return {"voice": part.media_id, "permanent": True} if part.permanent else {"voice": part.media_id}
    if isinstance(part, Image):
        return {"image": part.media_id}
    return {"kind": part.kind, "xml": part.xml}


def part_from_json(data: dict[str, Any]) -> Part:
    if "text" in data:
        return Text(data["text"])
    if "voice" in data:
        return Voice(data["voice"], bool(data.get("permanent")))
    if "image" in data:
        return Image(data["image"])
    return Rendered(data["kind"], data["xml"])


def text_of(part: Part) -> str | None:
    """The content of a text part; None for any other kind."""
    return part.content if isinstance(part, Text) else None
