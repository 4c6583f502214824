"""LLM answers: any OpenAI-compatible chat service answers text and transcribed voice, with memory per user.

Enable it by listing ``"handlers.llm:router"`` in ``[handlers] routers`` — last, so that every intent and
handler before it answers first — and configure ``[llm]`` (url, model, api_key or ``VOICEBOT_LLM_API_KEY``;
README, "LLM answers"). Needs the extra ``pip install 'wechat-voicebot[llm]'`` (the official openai library).

- :mod:`handlers.llm.handler`: the router; a streamed answer (``ctx.stream``) delivery shows as it is written;
- :mod:`handlers.llm.service`: the openai client, streaming, and failures by kind (each its apology);
- :mod:`handlers.llm.memory`: the turns kept in ``ctx.session``, bounded, merged when two messages race;
- :mod:`handlers.llm.markdown`: markdown → plain text, line by line, never changing what was shown;
- :mod:`handlers.llm.limits`: the per-user rate limit, counted in the store;
- :mod:`handlers.llm.checks`: what ``python -m bot check`` reports about the service;
- :mod:`handlers.llm.config`: the ``[llm]`` section this package declares (read by the config loader, which must
  not need the openai library: the rest is imported on first use, ``handlers.llm:router``).
"""
from __future__ import annotations

from typing import Any

__all__ = ["MarkdownStream", "router", "to_plain_text"]


def __getattr__(name: str) -> Any:
    """The router and helpers, imported on first use (PEP 562): without the llm extra, loading ``[llm]`` still
    works and naming the router says what to install."""
    if name not in __all__:
        raise AttributeError(f"module 'handlers.llm' has no attribute {name!r}")
    from handlers.llm.checks import check_llm
    from handlers.llm.handler import router
    from handlers.llm.markdown import MarkdownStream, to_plain_text
    if check_llm not in router.checks:
        router.check(check_llm)
    values = {"router": router, "MarkdownStream": MarkdownStream, "to_plain_text": to_plain_text}
    globals().update(values)
    return values[name]
