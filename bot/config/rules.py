"""Every rule that can refuse a config, in one place that each command, the WSGI entry and the RQ worker run
(through ``bot.config.loading``): a mistake stops start-up with one line that names the key.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses

from bot.config.schema import BUILTIN_SYNTHESIZERS, LLM_OWN_FIELDS, MEDIA_LIFETIME_S, Config, ConfigError, ReplyConfig

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def check(cfg: Config) -> None:
    """Every rule that can refuse a config (apart from the [[intents]] patterns and templates, checked where
    the intents are built): each command, the WSGI entry and the RQ worker load the config through here."""
    _check_aes_key(cfg.wechat.encoding_aes_key)
    if not cfg.server.path.startswith("/"):
        raise ConfigError(f"[server] path: expected a path starting with '/', got {cfg.server.path!r}")
    if not cfg.metrics.path.startswith("/") or cfg.metrics.path == cfg.server.path:
        raise ConfigError(f"[metrics] path: expected a path starting with '/' other than [server] path, "
                          f"got {cfg.metrics.path!r}")
    if not 0 < cfg.server.port < 65536:
        raise ConfigError(f"[server] port: expected 1-65535, got {cfg.server.port}")
    if cfg.logging.level.upper() not in LOG_LEVELS:  # logging would quietly fall back to INFO
        raise ConfigError(f"[logging] level: expected {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]} (any case), "
                          f"got {cfg.logging.level!r}")
    for i, spec in enumerate(cfg.handlers.routers):
        if ":" not in spec and "." not in spec and not spec.isidentifier():
            raise ConfigError(f"[handlers] routers[{i}]: expected 'module:attribute' or a plugin name, got {spec!r}")
    _check_reply(cfg)
    _check_matching(cfg)
    _check_late_answers(cfg.reply)
    _check_voice(cfg)
    _check_voice_reply(cfg)
    _check_llm(cfg)


def _check_late_answers(reply: ReplyConfig) -> None:
    """Pickup, splitting and typing: an answer that cannot fit or never expires would be lost at run time."""
    for name in ("customer_service_recheck_s", "pickup_ttl_s", "typing_after_s", "sweep_every_s"):
        if getattr(reply, name) <= 0:
            raise ConfigError(f"[reply] {name}: expected a positive number of seconds, got {getattr(reply, name):g}")
    room = reply.max_text_bytes - len(reply.more_marker.encode())
    if reply.max_text_bytes < 64 or room < 32:
        raise ConfigError(f"[reply] max_text_bytes: expected at least 64 bytes and 32 more than more_marker "
                          f"({len(reply.more_marker.encode())} bytes), got {reply.max_text_bytes}")
    if not reply.pickup_notice.strip() or len(reply.pickup_notice.encode()) > room:
        raise ConfigError(f"[reply] pickup_notice: expected a non-empty text of at most {room} bytes")

def _check_voice(cfg: Config) -> None:
    """``[voice]`` clocks and ``[voice.openai]``: a mistake here would otherwise show only as "没听清" to users."""
    voice, openai = cfg.voice, cfg.voice.openai
    for name in ("window_s", "wechat_share_s"):
        if getattr(voice, name) <= 0:
            raise ConfigError(f"[voice] {name}: expected a positive number of seconds, got {getattr(voice, name):g}")
    if openai.timeout_s <= 0:
        raise ConfigError(f"[voice.openai] timeout_s: expected a positive number of seconds, got {openai.timeout_s:g}")
    if openai.url and not openai.url.startswith(("http://", "https://")):
        raise ConfigError(f"[voice.openai] url: expected an http:// or https:// URL, got {openai.url!r}")
    if openai.language != openai.language.strip() or " " in openai.language:
        raise ConfigError(f"[voice.openai] language: expected a language code such as \"zh\", \"omit\" or \"\" "
                          f"(from [voice] lang), got {openai.language!r}")


def _check_voice_reply(cfg: Config) -> None:
    """``[voice.reply]``: the synthesizer specs and the openai endpoint, so a typo stops start-up, not a reply."""
    reply = cfg.voice.reply
    for i, spec in enumerate(reply.synthesizers):
        if spec not in BUILTIN_SYNTHESIZERS and ":" not in spec:
            raise ConfigError(f"[voice.reply] synthesizers[{i}]: expected one of {', '.join(BUILTIN_SYNTHESIZERS)} "
                              f"or 'module:attribute', got {spec!r}")
    if reply.when != "never" and cfg.reply.pickup_ttl_s > MEDIA_LIFETIME_S - 3600:
        raise ConfigError(f"[reply] pickup_ttl_s: at most {MEDIA_LIFETIME_S - 3600:g} with [voice.reply] on: a kept "
                          f"voice answer must expire before its media (3 days), got {cfg.reply.pickup_ttl_s:g}")
    if reply.when != "never" and not reply.synthesizers:
        raise ConfigError(f"[voice.reply] synthesizers: empty, but when = {reply.when!r} needs at least one")
    openai = reply.openai
    if openai.timeout_s <= 0:
        raise ConfigError(f"[voice.reply.openai] timeout_s: expected a positive number of seconds, got {openai.timeout_s:g}")
    if openai.url and not openai.url.startswith(("http://", "https://")):
        raise ConfigError(f"[voice.reply.openai] url: expected an http:// or https:// URL, got {openai.url!r}")
    if not openai.url and reply.when != "never" and "openai" in reply.synthesizers:
        raise ConfigError("[voice.reply.openai] url: required when [voice.reply] synthesizers lists \"openai\" "
                          f"and when = {reply.when!r}")




def _check_aes_key(key: str) -> None:
    """WeChat's EncodingAESKey: 43 characters of base64 that decode to the 32-byte AES key (wechatpy appends
    the "=" and decodes it on the first encrypted message: a bad key would otherwise fail there)."""
    if not key:
        return
    if len(key) != 43:
        raise ConfigError(f"[wechat] encoding_aes_key: expected 43 characters (or empty for plaintext mode), got {len(key)}")
    try:
        decoded = base64.b64decode(key + "=", validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != 32:  # the key is a secret: say what is wrong with it, never what it is
        raise ConfigError("[wechat] encoding_aes_key: expected 43 characters of base64 (A-Z, a-z, 0-9, + and /) as "
                          "WeChat generates it; copy it again from mp.weixin.qq.com → 设置与开发 → 基本配置")


def _check_reply(cfg: Config) -> None:
    """Delivery's clocks and executor: a config they cannot work with stops start-up, ``check`` included."""
    reply = cfg.reply
    if not 0 < reply.budget_s < reply.wechat_timeout_s:
        raise ConfigError(f"[reply] budget_s: expected more than 0 and less than wechat_timeout_s "
                          f"({reply.wechat_timeout_s:g}), got {reply.budget_s:g}")
    for name in ("tries", "lease_s", "state_ttl_s", "threads"):
        if getattr(reply, name) <= 0:
            raise ConfigError(f"[reply] {name}: expected a positive number, got {getattr(reply, name)!r}")
    if reply.executor == "rq" and not cfg.storage.url.startswith(("redis://", "rediss://")):
        scheme = cfg.storage.url.partition("://")[0] or cfg.storage.url  # not the URL: it may hold a password
        raise ConfigError(f'[reply] executor: "rq" needs a redis:// (or rediss://) [storage] url, got {scheme}://; '
                          'without Redis use executor = "threads"')




def _check_llm(cfg: Config) -> None:
    """``[llm]``: numbers in range, texts the user reads non-empty, and a url and model once it is enabled."""
    llm = cfg.llm
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


def _check_matching(cfg: Config) -> None:
    """Matching, sessions and forwarding: checked here so a mistake stops start-up, not a reply. The types of
    ``[[intents]]`` are checked here too; their patterns and templates where the intents are built
    (``bot.core.intents.intents_router``, when the webhook is built at start-up)."""
    if not 0 <= cfg.matching.fuzzy_threshold <= 1:
        raise ConfigError(f"[matching] fuzzy_threshold: expected a number from 0 to 1, got {cfg.matching.fuzzy_threshold:g}")
    if cfg.session.ttl_s <= 0:
        raise ConfigError(f"[session] ttl_s: expected a positive number of seconds, got {cfg.session.ttl_s:g}")
    if cfg.forward.timeout_s <= 0:
        raise ConfigError(f"[forward] timeout_s: expected a positive number of seconds, got {cfg.forward.timeout_s:g}")
    if any(spec.startswith("handlers.forward") for spec in cfg.handlers.routers):
        for key in ("url", "secret"):
            if not getattr(cfg.forward, key):
                raise ConfigError(f"[forward] {key}: required when [handlers] routers lists \"handlers.forward:router\"")
        if not cfg.forward.url.startswith(("http://", "https://")):
            raise ConfigError(f"[forward] url: expected an http:// or https:// URL, got {cfg.forward.url!r}")
