"""LLM answers: any OpenAI-compatible chat service answers text and transcribed voice, with memory per user.

Enable it by listing ``"handlers.llm:router"`` in ``[handlers] routers`` — last, so that every intent and
handler before it answers first — and configure ``[llm]`` (url, model, api_key or ``VOICEBOT_LLM_API_KEY``;
README, "LLM answers"). Needs the extra ``pip install 'wechat-voicebot[llm]'`` (the official openai library).

- :mod:`handlers.llm.handler`: the router; a streamed answer (``ctx.stream``) delivery shows as it is written;
- :mod:`handlers.llm.service`: the openai client, streaming, and failures by kind (each its apology);
- :mod:`handlers.llm.memory`: the turns kept in ``ctx.session``, bounded, merged when two messages race;
- :mod:`handlers.llm.markdown`: markdown → plain text, line by line, never changing what was shown;
- :mod:`handlers.llm.limits`: the per-user rate limit, counted in the store;
- :mod:`handlers.llm.checks`: what ``python -m bot check`` reports about the service.
"""
from handlers.llm.checks import check_llm
from handlers.llm.handler import router
from handlers.llm.markdown import MarkdownStream, to_plain_text

router.check(check_llm)

__all__ = ["MarkdownStream", "router", "to_plain_text"]
