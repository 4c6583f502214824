"""``[llm]``: the section ``handlers.llm`` declares (entry point ``wechat_voicebot.config``: ``llm``), its schema and
the rules that refuse it, next to the handler that reads it (``ctx.config.llm``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bot.config import Config, ConfigError, Section

LLM_OWN_FIELDS = ("model", "messages", "stream")  # what handlers.llm writes itself: not for [llm] extra


@dataclass(frozen=True)
class LLMApologiesConfig:
    """``[llm.apologies]``: what the user reads when the chat service fails, by why (the log line says which)."""

    auth: str = "抱歉，智能回答暂时不可用，请稍后再试。"  # 401/403: the key was refused (fix the config)
    not_found: str = "抱歉，智能回答暂时不可用，请稍后再试。"  # 404: wrong url or model
    rate_limited: str = "抱歉，现在提问的人太多了，请过一会儿再试。"  # 429 from the service
    server: str = "抱歉，智能回答服务出了点问题，请稍后再试。"  # 5xx
    timeout: str = "抱歉，这个问题想得太久了，请稍后再试或换个问法。"  # no answer within timeout_s
    connection: str = "抱歉，暂时连不上智能回答服务，请稍后再试。"  # unreachable, or the stream broke off
    other: str = "抱歉，这个问题暂时回答不了，请换个问法试试。"  # 400/422, or an answer that was not a chat answer


@dataclass(frozen=True)
class LLMConfig:
    """``[llm]``: the built-in ``handlers.llm:router``, any OpenAI-compatible chat service (README, "LLM answers")."""

    url: str = ""  # the base URL as the provider gives it for the openai library, e.g. "https://api.deepseek.com/v1"
    model: str = ""
    api_key: str = field(default="", repr=False)  # or VOICEBOT_LLM_API_KEY
    system_prompt: str = "你是一个微信公众号里的助手。回答简洁、口语化，适合在手机上阅读。"
    temperature: float = 0.7
    max_tokens: int = 0  # 0: the service's default
    timeout_s: float = 60.0  # the whole answer; delivery carries answers later than WeChat's 5 s
    extra: dict[str, Any] = field(default_factory=dict)  # more fields for the request body (provider options)
    max_history_turns: int = 10  # earlier turns (a question and its answer) sent along; 0: no memory
    max_history_chars: int = 4000  # and at most this many characters of them (the oldest go first)
    reset_words: list[str] = field(default_factory=lambda: ["/reset", "清除记忆"])
    reset_reply: str = "好的，我已经忘掉之前的对话，我们重新开始吧。"
    per_user_per_minute: int = 10  # questions per user per minute (counted in the store); 0: no limit
    rate_limited_reply: str = "你问得太快啦，请稍等一分钟再问我。"
    apologies: LLMApologiesConfig = field(default_factory=LLMApologiesConfig)


def check_llm(llm: LLMConfig, cfg: Config) -> None:
    """``[llm]``: numbers in range, texts the user reads non-empty, and a url and model once it is enabled."""
    if llm.url and not llm.url.startswith(("http://", "https://")):
        raise ConfigError(f"[llm] url: expected an http:// or https:// URL, got {llm.url!r}")
    if any(spec.startswith("handlers.llm") for spec in cfg.handlers.routers):
        for key in ("url", "model"):
            if not getattr(llm, key).strip():
                raise ConfigError(f"[llm] {key}: required when [handlers] routers lists \"handlers.llm:router\"")
    limits = {"timeout_s": llm.timeout_s > 0, "temperature": 0 <= llm.temperature <= 2, "max_tokens": llm.max_tokens >= 0,
              "max_history_turns": llm.max_history_turns >= 0, "max_history_chars": llm.max_history_chars >= 0,
              "per_user_per_minute": llm.per_user_per_minute >= 0}
    expected = {"timeout_s": "a positive number of seconds", "temperature": "a number from 0 to 2"}
    for key, ok in limits.items():
        if not ok:
            raise ConfigError(f"[llm] {key}: expected {expected.get(key, 'a number >= 0')}, got {getattr(llm, key):g}")
    if not all(word.strip() for word in llm.reset_words):
        raise ConfigError("[llm] reset_words: expected non-empty words")
    for key in ("reset_reply", "rate_limited_reply"):
        if not getattr(llm, key).strip():
            raise ConfigError(f"[llm] {key}: expected a non-empty text (the user reads it)")
    for f in dataclasses.fields(llm.apologies):
        if not getattr(llm.apologies, f.name).strip():
            raise ConfigError(f"[llm.apologies] {f.name}: expected a non-empty text (the user reads it)")
    for key in llm.extra:
        if key in LLM_OWN_FIELDS:
            raise ConfigError(f"[llm] extra: {key!r} is set by handlers.llm itself; leave it out")


SECTION = Section(LLMConfig, check_llm, env={"VOICEBOT_LLM_API_KEY": "api_key"})
