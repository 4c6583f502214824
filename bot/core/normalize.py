"""Speech-friendly text: undo what recognizers and phone keyboards add before anything is matched.

A transcript ends in "。", a keyboard types "ＡＢＣ１２３" or "打开，客厅的灯", a recognizer puts spaces between
Chinese words. None of that should decide whether an intent matches, so the webhook hands handlers
``ctx.text = normalize(original)`` and keeps ``ctx.original_text``. Optional: Chinese numerals to digits
(三 → 3, 二十五 → 25, 一百零八 → 108), and fuzzy keyword matching for characters a recognizer mishears.
"""
from __future__ import annotations

import re
import unicodedata
from difflib import SequenceMatcher
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import MatchingConfig

# Sentence punctuation recognizers and IMEs add, after NFKC (which already turns the full-width ，！？：；～
# into their ASCII forms). Kept out on purpose: quotes, brackets, "·" (in names), "-", "'", "/", "@", "#".
# A mark goes only where it separates (next to a space, a Chinese character, another mark or either end),
# so 3.5, 10:30, 1,000, example.com and markup such as <![CDATA[ keep theirs.
PUNCTUATION = frozenset("。，、；：？！…‥,.;:?!~")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SPACES = re.compile(r"\s+")
_CJK_GAP = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}0-9])|(?<=[0-9]) (?=[{_CJK}])")  # "打开 3 号灯" → "打开3号灯"
_HAS_CJK = re.compile(f"[{_CJK}]")

DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
UNITS = {"十": 10, "百": 100, "千": 1000}
BIG_UNITS = (("亿", 10**8), ("万", 10**4))
_NUMERAL_RUN = re.compile("[零〇一二两三四五六七八九十百千万亿]+")


def normalize(text: str, *, chinese_numerals: bool = False) -> str:
    """Half-width, without recognizer punctuation, single-spaced (none next to Chinese characters, except
    beside Latin letters: "Hi 你好")."""
    text = unicodedata.normalize("NFKC", text)
    if not PUNCTUATION.isdisjoint(text):  # most texts have none: no need to look at each character
        padded = f" {text} "
        text = "".join([" " if ch in PUNCTUATION and (_separates(padded[i]) or _separates(padded[i + 2])) else ch
                        for i, ch in enumerate(text)])  # a space for now: "Hi,你好" → "Hi 你好"; spaces settle below
    text = _CJK_GAP.sub("", _SPACES.sub(" ", text).strip())
    return chinese_to_digits(text) if chinese_numerals else text


def _separates(ch: str) -> bool:
    return ch.isspace() or ch in PUNCTUATION or _HAS_CJK.match(ch) is not None


def chinese_to_digits(text: str) -> str:
    """Every Chinese numeral in ``text`` as digits: 三 → 3, 二十五 → 25, 一百零八 → 108, 两万五 → 25000,
    三零一 → 301 (read digit by digit). A run it cannot read, or that starts with 百/千/万/亿 (千万, 万一),
    keeps its leading unit characters as they are."""
    def convert(match: re.Match[str]) -> str:
        run = match.group()
        head = len(run) - len(run.lstrip("百千万亿"))
        value = _numeral(run[head:])
        return run if value is None else run[:head] + value
    return _NUMERAL_RUN.sub(convert, text)


def _numeral(run: str) -> str | None:
    if not run:
        return None
    if all(ch in DIGITS for ch in run):
        return "".join(str(DIGITS[ch]) for ch in run)
    value = _with_big_units(run)
    return None if value is None else str(value)


def _with_big_units(run: str) -> int | None:
    for unit, factor in BIG_UNITS:
        head, found, tail = run.partition(unit)
        if not found:
            continue
        high = _with_big_units(head) if head else None
        if not high:
            return None
        if len(tail) == 1 and tail in DIGITS and DIGITS[tail]:  # 两万五 = 25000: the digit is the next unit down
            return high * factor + DIGITS[tail] * factor // 10
        low = _with_big_units(tail.lstrip("零〇")) if tail.strip("零〇") else 0
        return None if low is None or low >= factor else high * factor + low
    return _section(run)


def _section(run: str) -> int | None:
    """Below 10000: 二十五, 一百零八, 三千零五, 十五, and the spoken 一百五 (150) / 三千二 (3200)."""
    total, number, last_unit, after_unit = 0, None, None, False
    for ch in run:
        if ch in DIGITS:
            if number:  # two digits in a row inside a unit expression (三四百): not a number we read
                return None
            number, after_unit = DIGITS[ch], bool(last_unit) and number is None and after_unit
        elif ch in UNITS:
            unit = UNITS[ch]
            if last_unit is not None and unit >= last_unit:
                return None
            total += (1 if number is None else number) * unit
            number, last_unit, after_unit = None, unit, True
        else:
            return None
    if number:
        total += number * (last_unit // 10 if after_unit and last_unit and last_unit >= 100 else 1)
    return total


def fuzzy_ratio(word: str, text: str) -> float:
    """How well ``word`` matches its best window of ``text`` (difflib ratio, 0–1; 1.0 when contained).

    Windows one character shorter and longer than the word are tried too, so a dropped or an extra
    character costs no more than a misheard one.
    """
    word, text = word.lower(), text.lower()
    if not word or not text:
        return 0.0
    if word in text:
        return 1.0
    matcher, best = SequenceMatcher(None, autojunk=False), 0.0
    matcher.set_seq2(word)  # difflib caches details about the second sequence
    for size in sorted({max(1, len(word) - 1), len(word), len(word) + 1}):
        for start in range(max(1, len(text) - size + 1)):
            matcher.set_seq1(text[start:start + size])
            if matcher.real_quick_ratio() > best and matcher.quick_ratio() > best:
                best = max(best, matcher.ratio())
    return best


def guess_lang(text: str) -> str:
    """``zh_CN`` when the text has a Chinese character, else ``en_US``: WeChat's two voice-API languages."""
    return "zh_CN" if _HAS_CJK.search(text) else "en_US"


def for_matching(text: str, matching: MatchingConfig) -> str:
    """``text`` as ``[matching]`` says handlers should see it (``ctx.text``)."""
    if matching.normalize:
        return normalize(text, chinese_numerals=matching.chinese_numerals)
    return chinese_to_digits(text) if matching.chinese_numerals else text
