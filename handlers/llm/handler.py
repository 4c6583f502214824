"""The router: each text or transcribed voice message becomes a question to the chat service, answered as a
stream (``ctx.stream``) of plain text, with the user's earlier turns as memory.

Order of a message: a reset word starts over (and says so); then the rate limit; then the request. A failure
before any text is written answers the apology of its kind; one after some text keeps that text and adds the
apology. Each answer or failure is one log line with the message id (never the key).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from bot import Context, Router
from handlers.llm import memory
from handlers.llm.config import LLMConfig
from handlers.llm.limits import over_limit
from handlers.llm.markdown import MarkdownStream
from handlers.llm.service import LLMFailure, open_stream, pieces

log = logging.getLogger("handlers.llm")

router = Router("llm")


@router.text
@router.voice
def answer(ctx: Context) -> Any:
    """Ask the model; ``None`` (let others answer) only when there is no text (a voice nobody transcribed)."""
    question = (ctx.original_text or ctx.text or "").strip()
    if not question:
        return None
    cfg: LLMConfig = ctx.config.llm
    if is_reset(ctx, cfg):
        memory.forget(ctx.session)
        ctx.session_merge = memory.forget
        log.info("llm memory reset msg_id=%s", ctx.msg_id)
        return cfg.reset_reply
    if over_limit(ctx, cfg.per_user_per_minute):
        return cfg.rate_limited_reply
    remembering = cfg.max_history_turns > 0
    history = memory.turns(ctx.session) if remembering else []
    started = time.monotonic()
    try:
        stream = open_stream(cfg, memory.messages(cfg, history, question))
    except LLMFailure as failed:
        return apologize(ctx, cfg, failed, started)
    return ctx.stream(written(ctx, cfg, stream, question, started, remembering))


def is_reset(ctx: Context, cfg: LLMConfig) -> bool:
    """The message is one of the reset words (as typed, or as normalized: a transcript's "清除记忆。" counts)."""
    words = {w.strip().lower() for w in cfg.reset_words}
    return any((text or "").strip().lower() in words for text in (ctx.original_text, ctx.text))


def written(ctx: Context, cfg: LLMConfig, stream: Any, question: str, started: float,
            remembering: bool) -> Iterator[str]:
    """The answer as the user reads it, piece by piece (markdown turned into plain text, never rewritten)."""
    converter, shown = MarkdownStream(), []
    first_ms: float | None = None
    failed: LLMFailure | None = None

    def show(text: str) -> str:
        nonlocal first_ms
        if first_ms is None:
            first_ms = (time.monotonic() - started) * 1000
        shown.append(text)
        return text

    try:
        for piece in pieces(stream, cfg, started + cfg.timeout_s):
            text = converter.feed(piece)
            if text:
                yield show(text)
    except LLMFailure as exc:
        failed = exc
    tail = converter.finish()
    if tail:
        yield show(tail)
    text = "".join(shown)
    if failed is None and not text.strip():
        failed = LLMFailure("other", "the answer was empty")
    if failed is not None:
        yield ("\n\n" if text.strip() else "") + apologize(ctx, cfg, failed, started, written_chars=len(text))
        return
    log.info("llm answered msg_id=%s chars=%d first_text_ms=%.0f ms=%.0f", ctx.msg_id, len(text), first_ms or 0,
             (time.monotonic() - started) * 1000)
    if remembering:
        memory.add_turn(ctx.session, question, text, cfg)
        ctx.session_merge = lambda session: memory.add_turn(session, question, text, cfg)


def apologize(ctx: Context, cfg: LLMConfig, failed: LLMFailure, started: float, written_chars: int = 0) -> str:
    """One log line for the failure (message id, kind, reason; never the key), and its configured apology."""
    log.warning("llm failed msg_id=%s kind=%s reason=%s written_chars=%d ms=%.0f", ctx.msg_id, failed.kind,
                failed.reason, written_chars, (time.monotonic() - started) * 1000)
    return getattr(cfg.apologies, failed.kind)
