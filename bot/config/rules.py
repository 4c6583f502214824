"""Every rule that can refuse a config, in one place that each command, the WSGI entry and the RQ worker run
(through ``bot.config.loading``): a mistake stops start-up with one line that names the key.
"""
from __future__ import annotations

import base64
import binascii

from bot.config.extras import check_extras
from bot.config.schema import BUILTIN_SYNTHESIZERS, MEDIA_LIFETIME_S, Config, ConfigError, ReplyConfig

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
WECOM_MAX_TEXT_BYTES = 2048  # message/send truncates a longer text content


def check(cfg: Config, *, placeholder: bool = False) -> None:
    """Every rule that can refuse a config (apart from the [[intents]] patterns and templates, checked where
    the intents are built): each command, the WSGI entry and the RQ worker load the config through here.
    ``placeholder``: its [wechat] stands in for the [accounts.NAME] tables, each checked on its own."""
    account = f"[accounts.{cfg.account.name}]" if cfg.account.name else "[wechat]"
    _check_aes_key(cfg.wechat.encoding_aes_key, account)
    if not placeholder:
        _check_wechat(cfg, account)
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
    _check_wecom_reply(cfg)
    _check_voice(cfg)
    _check_voice_reply(cfg)
    check_extras(cfg)  # last: every value is sound, only an installation is missing


def _check_late_answers(reply: ReplyConfig) -> None:
    """Pickup, splitting and typing: an answer that cannot fit or never expires would be lost at run time."""
    for name in ("customer_service_recheck_s", "pickup_ttl_s", "typing_after_s", "sweep_every_s"):
        if getattr(reply, name) <= 0:
            raise ConfigError(f"[reply] {name}: expected a positive number of seconds, got {getattr(reply, name):g}")
    if reply.clock_skew_s < 0:
        raise ConfigError(f"[reply] clock_skew_s: expected 0 or more seconds, got {reply.clock_skew_s:g}")
    room = reply.max_text_bytes - len(reply.more_marker.encode())
    if reply.max_text_bytes < 64 or room < 32:
        raise ConfigError(f"[reply] max_text_bytes: expected at least 64 bytes and 32 more than more_marker "
                          f"({len(reply.more_marker.encode())} bytes), got {reply.max_text_bytes}")
    if not reply.pickup_notice.strip() or len(reply.pickup_notice.encode()) > room:
        raise ConfigError(f"[reply] pickup_notice: expected a non-empty text of at most {room} bytes")


def _check_wecom_reply(cfg: Config) -> None:
    """A WeCom app truncates a text over 2048 bytes (its docs): a larger limit would cut answers short unseen."""
    if cfg.account.kind == "wecom_app" and cfg.reply.max_text_bytes > WECOM_MAX_TEXT_BYTES:
        raise ConfigError(f"[accounts.{cfg.account.name}.reply] max_text_bytes: at most {WECOM_MAX_TEXT_BYTES} on a "
                          f"WeCom app (WeCom truncates longer texts), got {cfg.reply.max_text_bytes}")


def _check_voice(cfg: Config) -> None:
    """``[voice.openai] language`` (its url, timeout and ``[voice]``'s clocks: ``_check_wechat``): a mistake here
    would otherwise show only as "没听清" to users."""
    language = cfg.voice.openai.language
    if language != language.strip() or " " in language:
        raise ConfigError(f"[voice.openai] language: expected a language code such as \"zh\", \"omit\" or \"\" "
                          f"(from [voice] lang), got {language!r}")


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
    if reply.material_grace_s <= 0:
        raise ConfigError(f"[voice.reply] material_grace_s: expected a positive number of seconds, got "
                          f"{reply.material_grace_s:g}")
    openai = reply.openai
    if openai.timeout_s <= 0:
        raise ConfigError(f"[voice.reply.openai] timeout_s: expected a positive number of seconds, got {openai.timeout_s:g}")
    if openai.url and not openai.url.startswith(("http://", "https://")):
        raise ConfigError(f"[voice.reply.openai] url: expected an http:// or https:// URL, got {openai.url!r}")
    if not openai.url and reply.when != "never" and "openai" in reply.synthesizers:
        raise ConfigError("[voice.reply.openai] url: required when [voice.reply] synthesizers lists \"openai\" "
                          f"and when = {reply.when!r}")


def _check_wechat(cfg: Config, account: str = "[wechat]") -> None:
    """What ``check`` would only report and the bot would fail on at run time: an empty Token (every signature
    would be computable by anyone), an API base URL requests cannot call, timeouts and limits that are not
    positive, a recognizer endpoint that is not a URL."""
    if not cfg.wechat.token:
        raise ConfigError(f"{account} token: expected the Token typed on mp.weixin.qq.com (设置与开发 → 基本配置), "
                          "got an empty string")
    for key, url in ((f"{account} api_base_url", cfg.wechat.api_base_url), ("[voice.openai] url", cfg.voice.openai.url)):
        if (url or key == f"{account} api_base_url") and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}: expected an http:// or https:// URL, got {url!r}")
    positive = {f"{account} http_timeout_s": cfg.wechat.http_timeout_s, "[server] max_body_bytes": cfg.server.max_body_bytes,
                "[voice] window_s": cfg.voice.window_s, "[voice] wechat_share_s": cfg.voice.wechat_share_s,
                "[voice] poll_initial_s": cfg.voice.poll_initial_s,
                "[voice] poll_max_s": cfg.voice.poll_max_s, "[voice.openai] timeout_s": cfg.voice.openai.timeout_s}
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: expected a positive number, got {value:g}")
    if cfg.server.replay_window_s < 0:
        raise ConfigError(f"[server] replay_window_s: expected 0 (off) or more seconds, got {cfg.server.replay_window_s:g}")


def _check_aes_key(key: str, where: str = "[wechat]") -> None:
    """WeChat's EncodingAESKey: 43 characters of base64 that decode to the 32-byte AES key (wechatpy appends
    the "=" and decodes it on the first encrypted message: a bad key would otherwise fail there)."""
    if not key:
        return
    if len(key) != 43:
        raise ConfigError(f"{where} encoding_aes_key: expected 43 characters (or empty for plaintext mode), got {len(key)}")
    try:
        decoded = base64.b64decode(key + "=", validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != 32:  # the key is a secret: say what is wrong with it, never what it is
        settings = "mp.weixin.qq.com → 设置与开发 → 基本配置" if where == "[wechat]" else \
            "the account's callback settings (a WeCom app: 应用管理 → the app → 接收消息 → 设置API接收)"
        raise ConfigError(f"{where} encoding_aes_key: expected 43 characters of base64 (A-Z, a-z, 0-9, + and /) as "
                          f"WeChat generates it; copy it again from {settings}")


def _check_reply(cfg: Config) -> None:
    """Delivery's clocks and executor: a config they cannot work with stops start-up, ``check`` included."""
    reply = cfg.reply
    if not 0 < reply.budget_s < reply.wechat_timeout_s:
        raise ConfigError(f"[reply] budget_s: expected more than 0 and less than wechat_timeout_s "
                          f"({reply.wechat_timeout_s:g}), got {reply.budget_s:g}")
    if not 0 <= reply.fast_path_s < float("inf"):  # above budget_s / 2 it is budget_s / 2
        raise ConfigError(f"[reply] fast_path_s: expected 0 (off) or a number of seconds, got {reply.fast_path_s:g}")
    for name in ("tries", "lease_s", "state_ttl_s", "threads"):
        if getattr(reply, name) <= 0:
            raise ConfigError(f"[reply] {name}: expected a positive number, got {getattr(reply, name)!r}")
    if reply.executor == "rq" and not cfg.storage.url.startswith(("redis://", "rediss://")):
        scheme = cfg.storage.url.partition("://")[0] or cfg.storage.url  # not the URL: it may hold a password
        raise ConfigError(f'[reply] executor: "rq" needs a redis:// (or rediss://) [storage] url, got {scheme}://; '
                          'without Redis use executor = "threads"')




def _check_matching(cfg: Config) -> None:
    """Matching and sessions: checked here so a mistake stops start-up, not a reply. The types of
    ``[[intents]]`` are checked here too; their patterns and templates where the intents are built
    (``bot.core.intents.intents_router``, when the webhook is built at start-up)."""
    if not 0 <= cfg.matching.fuzzy_threshold <= 1:
        raise ConfigError(f"[matching] fuzzy_threshold: expected a number from 0 to 1, got {cfg.matching.fuzzy_threshold:g}")
    if cfg.session.ttl_s <= 0:
        raise ConfigError(f"[session] ttl_s: expected a positive number of seconds, got {cfg.session.ttl_s:g}")
