"""Answers that arrive as they are written: a handler returns :class:`StreamedText` over text chunks.

A language model writes for 20 seconds; WeChat waits 5. The pipeline reads the chunks as they come and
publishes each time a sentence is complete (``on_sentences``), so delivery can show the sentences written
so far at the budget of the try that must answer, and send the rest as a continuation (bot/delivery/).
When the stream ends, the whole text is the answer, as if the handler had returned it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from bot.core.text import SENTENCE_ENDS

Progress = Callable[[str], None]  # called with the complete sentences written so far (a growing prefix)


class StreamedText:
    """``return StreamedText(chunks)`` (or ``ctx.stream(chunks)``): ``chunks`` yields pieces of one text."""

    def __init__(self, chunks: Iterable[str]) -> None:
        self.chunks = chunks

    def read(self, on_sentences: Progress | None = None) -> str:
        """Drain the stream; ``on_sentences`` gets the complete sentences so far each time one ends."""
        text, published = "", 0
        for chunk in self._pieces():
            text += chunk
            end = complete_prefix(text)
            if on_sentences is not None and end > published:
                published = end
                on_sentences(text[:end])
        return text

    def _pieces(self) -> Iterator[str]:
        for chunk in self.chunks:
            if chunk:
                yield str(chunk)


def complete_prefix(text: str) -> int:
    """Length of the longest prefix of ``text`` that ends a sentence (0: none yet)."""
    return max((text.rfind(end) + 1 for end in SENTENCE_ENDS), default=0)
