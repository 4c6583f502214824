"""Markdown → plain text that WeChat shows well, converted as it streams without changing what was shown.

WeChat shows a text message as typed: ``**重点**``, ``## 标题``, code fences and table pipes reach the user
literally, and language models write markdown whether asked to or not. :func:`to_plain_text` turns it into
text a phone shows well:

- headings lose their ``#``; bold, italic, strikethrough and inline code lose their markers;
- list items become ``• item`` (nested: ``◦``, indentation kept), ``1. item`` stays, task lists ``☐``/``☑``;
- code fences disappear and the code lines stay verbatim (nothing inside is converted);
- a table becomes one line per row, each cell named by its column (``名称：值；价格：3 元``, or ``name: value;
  price: 3`` for a table without Chinese), the separator row dropped; quotes lose ``>``;
- links become ``text (url)`` (just ``url`` when the text is the url), images ``alt (url)``, ``<url>`` the url;
- horizontal rules and runs of blank lines become one blank line; ``<br>`` a line break; ``\\*`` a ``*``.

A streamed answer is published while it is written, so the conversion must never change text already shown.
:class:`MarkdownStream` therefore converts a line once it is complete (block syntax is decided by whole lines),
and emits a part of a long line early only up to a sentence end where every inline marker of that part is
closed (so nothing later in the line can pair with it); a table row waits for the next line (is it the header?).
Whatever the chunking, the pieces add up to exactly :func:`to_plain_text` of the whole (tests/test_markdown.py).
"""
from __future__ import annotations

import re

__all__ = ["MarkdownStream", "to_plain_text"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+|$)")
_HEADING_TAIL = re.compile(r"[ \t]+#+[ \t]*$")
_RULE = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,}|=+[ \t]*)$")  # and setext lines
_QUOTE = re.compile(r"^ {0,3}(?:>[ \t]?)+")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+(?:\[([ xX])\][ \t]+)?")
_ORDERED = re.compile(r"^([ \t]*)(\d{1,9})[.)][ \t]+")
_SEPARATOR_CELL = re.compile(r"^[ \t]*:?-+:?[ \t]*$")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

# Inline syntax, applied in this order; what must survive the later passes verbatim (code, urls, escapes) is
# parked behind a placeholder first.
_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)(.+?)(?<!`)\1(?!`)")  # closed by a run as long; \` opens none
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|~<>])")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^>\s]+|[^>\s@]+@[^>\s@]+\.[a-zA-Z]{2,})>")
# A bare url ends at whitespace, brackets, a backtick or CJK punctuation (so "见 https://a.cn。" keeps its "。"
# out of it, and a code span after it is still one).
_BARE_URL = re.compile(r"(?:https?|ftp)://[^\s<>()\[\]`\u3000-\u303f\uff00-\uffef\ue000\ue001]+")
_EMPHASIS = (
    re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*"),
    re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"),
    re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)"),
    re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"),
    re.compile(r"(?<!\*)\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?!\*)"),
    re.compile(r"(?<!\w)_(?=[^\s_])(.+?)(?<=[^\s_])_(?!\w)"),
)
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAGS = re.compile(r"</?(?:b|i|u|s|em|strong|del|ins|mark|sup|sub|code|kbd|span|small)>", re.IGNORECASE)
_PARKED = re.compile("\ue000(\\d+)\ue001")
# What an early part of a line may not contain once converted: a marker still open could be closed later on.
_OPEN_MARKER = re.compile(r"[*`\[\]<>\\]|~~|(?<!\w)_|_(?!\w)")
# Where a line may be cut early: after a sentence end (ASCII ones only before whitespace: not 3.5 or a.b),
# and after any closing quotes or brackets that follow it.
_CUT = re.compile(r"(?:[。！？；]|[.!?;](?=\s))[”’」』）)\"']*")


def _inline(text: str) -> tuple[str, list[str]]:
    """Inline markdown of one line (or part of one) → plain text, with code, urls and escapes still parked."""
    parked: list[str] = []

    def park(value: str) -> str:
        parked.append(value)
        return f"\ue000{len(parked) - 1}\ue001"

    def link(m: re.Match[str]) -> str:
        label, url = m.group(1).strip(), m.group(2)
        return park(url) if not label or label == url else f"{label} ({park(url)})"

    text = _CODE_SPAN.sub(lambda m: park(m.group(2).strip() or m.group(2)), text)
    text = _ESCAPE.sub(lambda m: park(m.group(1)), text)
    text = _IMAGE.sub(link, text)
    text = _LINK.sub(link, text)
    text = _AUTOLINK.sub(lambda m: park(m.group(1)), text)
    text = _BARE_URL.sub(lambda m: park(m.group(0)), text)
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    return _TAGS.sub("", _BREAK.sub("\n", text)), parked


def _restore(text: str, parked: list[str]) -> str:
    return _PARKED.sub(lambda m: parked[int(m.group(1))], text)


def inline(text: str) -> str:
    """Inline markdown → plain text (for one line: block syntax is :class:`MarkdownStream`'s)."""
    converted, parked = _inline(text)
    return _restore(converted, parked)


def _closed(text: str) -> str | None:
    """``text`` converted, if no marker in it is left open (else None: a later part of the line could close it)."""
    converted, parked = _inline(text)
    return None if _OPEN_MARKER.search(converted) else _restore(converted, parked)


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", body)]


def _is_separator(line: str) -> bool:
    return "|" in line and all(_SEPARATOR_CELL.match(cell) for cell in _cells(line))


def _row(cells: list[str], header: list[str] | None) -> str:
    """A table row as one line: each value named by its column (``名称：值；…``), or the values alone."""
    values = [inline(c) for c in cells]
    if not header:
        return " | ".join(v for v in values if v)
    names = [inline(h) for h in header]
    cjk = bool(_CJK.search("".join(names + values)))
    colon, sep = ("：", "；") if cjk else (": ", "; ")
    named = [(names[i] if i < len(names) else "", v) for i, v in enumerate(values) if v]
    return sep.join(f"{n}{colon}{v}" if n and n != v else v for n, v in named)


def _block(line: str, complete: bool = True) -> tuple[str, str]:
    """(what a line's block syntax becomes, the inline content after it), for a line that is neither a fence,
    a table row nor a rule. A heading's closing ``#``s are dropped only once the line is ``complete``."""
    line = _QUOTE.sub("", line)
    if _HEADING.match(line):
        content = _HEADING.sub("", line, count=1)
        return "", _HEADING_TAIL.sub("", content) if complete else content
    m = _BULLET.match(line)
    if m:
        indent = len(m.group(1).expandtabs(4))
        mark = {" ": "☐ ", "x": "☑ ", "X": "☑ "}.get(m.group(2) or "", "• " if indent < 2 else "◦ ")
        return " " * min(indent, 8) + mark, line[m.end():]
    m = _ORDERED.match(line)
    if m:
        indent = len(m.group(1).expandtabs(4))
        return " " * min(indent, 8) + m.group(2) + ". ", line[m.end():]
    return "", line.lstrip()


class MarkdownStream:
    """Feed markdown as it arrives; each call returns the plain text that became final (append it).

    ``feed(chunk)`` → text to show now; ``finish()`` → the rest, once the answer is complete.
    """

    def __init__(self) -> None:
        self._buf = ""  # the current line, not yet complete
        self._shown: int | None = None  # of the current line: None, or how much of its content was shown early
        self._started = False  # any text emitted yet (lines after the first start with a line break)
        self._blank = False  # a blank line is due before the next text
        self._fence: tuple[str, int] | None = None  # inside a code block: its fence character and length
        self._header: list[str] | None = None  # inside a table: its header cells
        self._rows = 0
        self._held: str | None = None  # a table-looking line waiting for the next (is a separator next?)

    # -- public -------------------------------------------------------------------------------------
    def feed(self, chunk: str) -> str:
        self._buf += chunk
        out = []
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            out.append(self._complete(line))
        out.append(self._early())
        return "".join(out)

    def finish(self) -> str:
        out = self._complete(self._buf) if self._buf or self._shown is not None else ""
        self._buf = ""
        out += self._flush_table()
        return out

    # -- lines --------------------------------------------------------------------------------------
    def _emit(self, text: str) -> str:
        """A new output line: after a line break (two after a blank line), none before the first."""
        if not text.strip():
            self._blank = self._started
            return ""
        sep = ("\n\n" if self._blank else "\n") if self._started else ""
        self._started, self._blank = True, False
        return sep + text

    def _complete(self, line: str) -> str:
        line = line.rstrip("\r")
        if self._shown is not None:  # its start is out already: only the rest of its inline content is due
            rest = inline(_block(line)[1][self._shown:]).rstrip()
            self._shown = None
            return rest
        if self._fence is not None:
            m = _FENCE.match(line)
            if m and m.group(1)[0] == self._fence[0] and len(m.group(1)) >= self._fence[1] and \
                    not line[m.end():].strip():
                self._fence = None
                return ""
            return self._emit(line.rstrip()) if line.strip() else self._code_blank()
        out = ""
        if self._held is not None:
            held, self._held = self._held, None
            if _is_separator(line):
                self._header, self._rows = _cells(held), 0
                return ""
            out += self._emit(_row(_cells(held), None))
        if self._header is not None:
            if line.lstrip().startswith("|"):
                self._rows += 1
                return out + self._emit(_row(_cells(line), self._header))
            out += self._flush_table()
        if line.lstrip().startswith("|"):
            self._held = line
            return out
        m = _FENCE.match(line)
        if m:
            self._fence = (m.group(1)[0], len(m.group(1)))
            return out
        if not line.strip() or _RULE.match(line):
            self._blank = self._started
            return out
        prefix, content = _block(line)
        text = inline(content).rstrip()
        return out + (self._emit(prefix + text) if text else self._emit(""))

    def _code_blank(self) -> str:
        """A blank line inside code is kept (code's spacing matters), but never doubled with a pending one."""
        if self._started and not self._blank:
            self._blank = True
        return ""

    def _flush_table(self) -> str:
        out = ""
        if self._held is not None:
            out, self._held = self._emit(_row(_cells(self._held), None)), None
        if self._header is not None:
            if not self._rows:  # a header and no rows: show the header itself
                out += self._emit(_row(self._header, None))
            self._header = None
        return out

    # -- early parts of a long line -----------------------------------------------------------------
    def _early(self) -> str:
        """The part of the incomplete line that is final already: up to its last sentence end where every
        marker before it is closed (a table row, a fence or code waits for the whole line)."""
        if self._fence is not None or self._held is not None or self._header is not None:
            return ""
        stripped = self._buf.lstrip()
        if not stripped or stripped[0] in "|`~":
            return ""
        prefix, content = _block(self._buf, complete=False)
        done, out = self._shown or 0, ""
        for m in _CUT.finditer(content, done):
            piece = _closed(content[done:m.end()])
            if piece is None:
                continue
            out += piece if self._shown is not None else self._emit(prefix + piece)
            done = self._shown = m.end()
        return out


def to_plain_text(markdown: str) -> str:
    """The whole of ``markdown`` as plain text (what a :class:`MarkdownStream` adds up to, in one go)."""
    stream = MarkdownStream()
    return stream.feed(markdown) + stream.finish()
