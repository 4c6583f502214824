"""The conversation a user has with the model, kept in ``ctx.session`` so it spans workers and expires with it.

Stored under ``ctx.session["llm"]`` as ``[{"user": question, "assistant": answer}, ...]``, oldest first, bounded
by ``[llm] max_history_turns`` and ``max_history_chars`` (the oldest turns go first; a single turn longer than
the budget is not kept). The answer kept is the plain text the user read, not the model's markdown.

Two messages of one user answered at once both read the same history; the first to finish saves its turn.
The second's compare-and-set then fails, and the session layer calls :func:`add_turn` again on the history
the first saved (``ctx.session_merge``): both turns are kept, in the order the answers finished. A reset
racing an answer is merged the same way: whichever finishes last decides (a reset last forgets both).
"""
from __future__ import annotations

from typing import Any

from handlers.llm.config import LLMConfig

KEY = "llm"


def turns(session: dict[str, Any]) -> list[dict[str, str]]:
    """The stored turns; anything that is not a well-formed turn (an older layout, a hand edit) is skipped."""
    stored = session.get(KEY)
    if not isinstance(stored, list):
        return []
    return [t for t in stored if isinstance(t, dict) and isinstance(t.get("user"), str)
            and isinstance(t.get("assistant"), str)]


def bounded(history: list[dict[str, str]], max_turns: int, max_chars: int) -> list[dict[str, str]]:
    """The most recent turns that fit both bounds."""
    kept = history[-max_turns:] if max_turns > 0 else []
    total = sum(len(t["user"]) + len(t["assistant"]) for t in kept)
    while kept and total > max_chars:
        oldest = kept.pop(0)
        total -= len(oldest["user"]) + len(oldest["assistant"])
    return kept


def add_turn(session: dict[str, Any], question: str, answer: str, cfg: LLMConfig) -> None:
    """Append one turn to the session's history (in place), within the bounds."""
    history = bounded([*turns(session), {"user": question, "assistant": answer}], cfg.max_history_turns,
                      cfg.max_history_chars)
    if history:
        session[KEY] = history
    else:
        session.pop(KEY, None)


def forget(session: dict[str, Any]) -> None:
    """Start over: the history is gone (the rest of the session, other handlers' state, stays)."""
    session.pop(KEY, None)


def messages(cfg: LLMConfig, history: list[dict[str, str]], question: str) -> list[dict[str, str]]:
    """The chat request's messages: the system prompt, the remembered turns, the question."""
    out = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt.strip() else []
    for turn in bounded(history, cfg.max_history_turns, cfg.max_history_chars):  # the config may have shrunk
        out += [{"role": "user", "content": turn["user"]}, {"role": "assistant", "content": turn["assistant"]}]
    return out + [{"role": "user", "content": question}]
