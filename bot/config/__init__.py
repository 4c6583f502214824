"""Typed configuration, loaded from TOML and checked once at start-up (the base layer: imports nothing of the bot).

A wrong or missing key stops start-up with one line that names the key and what was expected, so an
operator never debugs a half-configured bot at request time.
"""
from __future__ import annotations

from bot.config.loading import (
    DEFAULT_CONFIGS,
    ENV_OVERRIDES,
    NEXT_STEP,
    config_from_dict,
    config_path,
    find_config,
    load_config,
)
from bot.config.schema import (
    BUILTIN_SYNTHESIZERS,
    LLM_OWN_FIELDS,
    MEDIA_LIFETIME_S,
    Config,
    ConfigError,
    ForwardConfig,
    HandlersConfig,
    IntentConfig,
    LLMApologiesConfig,
    LLMConfig,
    LoggingConfig,
    MatchingConfig,
    MetricsConfig,
    OpenAIConfig,
    OpenAISpeechConfig,
    ReplyConfig,
    ServerConfig,
    SessionConfig,
    StorageConfig,
    VoiceConfig,
    VoiceReplyConfig,
    WeChatConfig,
)

__all__ = ["BUILTIN_SYNTHESIZERS", "Config", "ConfigError", "DEFAULT_CONFIGS", "ENV_OVERRIDES", "ForwardConfig", "HandlersConfig", "IntentConfig", "LLMApologiesConfig", "LLMConfig", "LLM_OWN_FIELDS", "LoggingConfig", "MEDIA_LIFETIME_S", "MatchingConfig", "MetricsConfig", "NEXT_STEP", "OpenAIConfig", "OpenAISpeechConfig", "ReplyConfig", "ServerConfig", "SessionConfig", "StorageConfig", "VoiceConfig", "VoiceReplyConfig", "WeChatConfig", "config_from_dict", "config_path", "find_config", "load_config"]
