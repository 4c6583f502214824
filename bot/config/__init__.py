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
    KINDS,
    MEDIA_LIFETIME_S,
    AccountInfo,
    Config,
    ConfigError,
    HandlersConfig,
    IntentConfig,
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
    WeComAppConfig,
)
from bot.config.sections import Section, declared_sections

__all__ = ["AccountInfo", "BUILTIN_SYNTHESIZERS", "Config", "ConfigError", "DEFAULT_CONFIGS", "ENV_OVERRIDES", "HandlersConfig", "IntentConfig", "KINDS", "LoggingConfig", "MEDIA_LIFETIME_S", "MatchingConfig", "MetricsConfig", "NEXT_STEP", "OpenAIConfig", "OpenAISpeechConfig", "ReplyConfig", "ServerConfig", "SessionConfig", "StorageConfig", "VoiceConfig", "Section", "VoiceReplyConfig", "WeChatConfig", "WeComAppConfig", "config_from_dict", "declared_sections", "config_path", "find_config", "load_config"]
