"""Typed configuration, loaded from TOML and checked once at start-up.

A wrong or missing key stops start-up with one line that names the key and what was expected, so an
operator never debugs a half-configured bot at request time.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """One clear line: which key, what was expected."""


@dataclass(frozen=True)
class WeChatConfig:
    appid: str
    appsecret: str = field(repr=False)
    token: str = field(repr=False)
    encoding_aes_key: str = field(default="", repr=False)  # empty: plaintext mode only
    api_base_url: str = "https://api.weixin.qq.com"
    token_endpoint: Literal["stable", "classic"] = "stable"
    http_timeout_s: float = 5.0


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    path: str = "/wechat"
    max_body_bytes: int = 65536
    replay_window_s: float = 300.0


@dataclass(frozen=True)
class HandlersConfig:
    routers: list[str] = field(default_factory=lambda: ["handlers.echo:router"])
    search_paths: list[str] = field(default_factory=lambda: ["."])
    apology: str = "抱歉，出了点问题，请稍后再试。"


@dataclass(frozen=True)
class OpenAIConfig:
    url: str = ""
    model: str = "whisper-1"
    api_key: str = field(default="", repr=False)
    timeout_s: float = 8.0


@dataclass(frozen=True)
class OpenAISpeechConfig:
    """``[voice.reply.openai]``: any OpenAI-compatible ``POST /v1/audio/speech`` (bot/voice/synthesizers/openai.py)."""

    url: str = ""
    model: str = "tts-1"
    voice: str = "alloy"
    api_key: str = field(default="", repr=False)  # or VOICEBOT_TTS_API_KEY
    timeout_s: float = 8.0
    response_format: Literal["mp3", "wav", "opus", "aac", "flac"] = "mp3"  # what the endpoint is asked for


@dataclass(frozen=True)
class VoiceReplyConfig:
    """``[voice.reply]``: answering with speech (bot/voice/synthesizers/, bot/voice/speech.py)."""

    when: Literal["never", "voice", "always"] = "never"  # never: nothing changes for existing bots
    with_text: bool = False  # also deliver the text of a voice answer
    synthesizers: list[str] = field(default_factory=lambda: ["openai"])  # tried in order; "module:attr" too
    format: Literal["amr", "mp3"] = "amr"  # the voice media uploaded to WeChat (AMR-NB 8 kHz, or mp3 16 kHz)
    openai: OpenAISpeechConfig = field(default_factory=OpenAISpeechConfig)


@dataclass(frozen=True)
class VoiceConfig:
    recognizers: list[str] = field(default_factory=lambda: ["push", "wechat"])
    lang: Literal["zh_CN", "en_US"] = "zh_CN"
    use_push_recognition: bool = True
    window_s: float = 10.0
    poll_initial_s: float = 0.2
    poll_max_s: float = 0.5
    not_understood: str = "抱歉，没听清，请再说一遍。"
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    reply: VoiceReplyConfig = field(default_factory=VoiceReplyConfig)


@dataclass(frozen=True)
class StorageConfig:
    url: str = field(default="sqlite:///.voicebot/state.db", repr=False)  # may hold a Redis password
    prefix: str = "wvb:"


@dataclass(frozen=True)
class ReplyConfig:
    budget_s: float = 4.5
    mode: Literal["auto", "customer_service", "passive"] = "auto"
    wechat_timeout_s: float = 5.0
    tries: int = 3
    lease_s: float = 6.0
    state_ttl_s: float = 3600.0
    executor: Literal["threads", "rq"] = "threads"
    threads: int = 32
    queue: str = "wechat-voicebot"
    # What the account may do: the customer-service API needs a verified account (others get 48001). "auto"
    # tries it and remembers a refusal for customer_service_recheck_s; false never calls it.
    customer_service: Literal["auto", True, False] = "auto"
    customer_service_recheck_s: float = 86400.0
    pickup_ttl_s: float = 86400.0  # an answer no request could carry waits this long for the user's next message
    pickup_notice: str = "回答还在准备中，稍后发任意消息即可收到。"
    max_text_bytes: int = 2048  # WeChat's limit for a text message (UTF-8 bytes of the content)
    more_marker: str = "（未完，回复任意文字继续）"
    typing_after_s: float = 2.0  # a job still running this long shows "对方正在输入" (customer-service accounts)
    sweep_every_s: float = 1.0  # how often each process looks for answers no request will carry


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: Literal["text", "json"] = "text"  # json: one object per line, for log shippers (bot/ops/trace.py)
    hash_openid: bool = True  # openids are personal data: log sha256(salt + openid)[:12] unless false
    openid_salt: str = field(default="", repr=False)  # empty: derived from appid + appsecret (per deployment)


@dataclass(frozen=True)
class MetricsConfig:
    """``GET /metrics`` (Prometheus); off by default because it reveals traffic to whoever can reach it."""

    enabled: bool = False
    token: str = field(default="", repr=False)  # non-empty: require ``Authorization: Bearer <token>``
    path: str = "/metrics"


@dataclass(frozen=True)
class MatchingConfig:
    """How text is prepared before matching (see bot/core/normalize.py)."""

    normalize: bool = True
    chinese_numerals: bool = False
    fuzzy_threshold: float = 0.0  # default for keyword matches that set no ``fuzzy`` of their own; 0 = off


@dataclass(frozen=True)
class SessionConfig:
    ttl_s: float = 1800.0  # a session expires this long after it last changed


@dataclass(frozen=True)
class ForwardConfig:
    """The built-in ``handlers.forward:router``: POST each message to your own service (signed, JSON)."""

    url: str = ""
    secret: str = field(default="", repr=False)
    timeout_s: float = 3.0


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


@dataclass(frozen=True)
class IntentConfig:
    """One ``[[intents]]`` table: a no-code intent (bot/core/intents.py)."""

    name: str
    reply: str
    patterns: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    priority: int = 0
    fuzzy: float | None = None  # None: [matching] fuzzy_threshold


@dataclass(frozen=True)
class Config:
    wechat: WeChatConfig
    server: ServerConfig = field(default_factory=ServerConfig)
    handlers: HandlersConfig = field(default_factory=HandlersConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    reply: ReplyConfig = field(default_factory=ReplyConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    intents: list[IntentConfig] = field(default_factory=list)
    base_dir: Path = Path(".")

    def replace(self, **sections: Any) -> "Config":
        """A copy with some sections or keys changed: ``cfg.replace(server={"port": 9000})``."""
        changes = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if isinstance(value, dict) and dataclasses.is_dataclass(current):
                value = dataclasses.replace(current, **value)
            changes[name] = value
        return dataclasses.replace(self, **changes)


DEFAULT_CONFIGS = ("config.toml", "config.example.toml")  # looked for in the working directory, in this order
# What a command's "config file not found" tells the user to do next.
NEXT_STEP = "copy config.example.toml to config.toml and edit it, or pass --config FILE"

ENV_OVERRIDES = {
    "WECHAT_APPID": ("wechat", "appid"),
    "WECHAT_APPSECRET": ("wechat", "appsecret"),
    "WECHAT_TOKEN": ("wechat", "token"),
    "WECHAT_AES_KEY": ("wechat", "encoding_aes_key"),
    "VOICEBOT_FORWARD_SECRET": ("forward", "secret"),
    "VOICEBOT_TTS_API_KEY": ("voice.reply.openai", "api_key"),
    "VOICEBOT_LLM_API_KEY": ("llm", "api_key"),
}


def load_config(path: str | os.PathLike[str], env: typing.Mapping[str, str] | None = None, *,
                next_step: str = NEXT_STEP) -> Config:
    """Read a TOML file, apply environment secrets, and validate everything (``next_step``: what a missing file's
    error tells the user to do)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} ({next_step})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    return config_from_dict(raw, env=os.environ if env is None else env, base_dir=path.parent.resolve())


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The file a command reads: ``path``, else the first of :data:`DEFAULT_CONFIGS` in the working directory.

    One rule for every command and ``make run``, so that ``simulate`` signs with the secrets ``serve`` checks."""
    if path is not None:
        return Path(path)
    for name in DEFAULT_CONFIGS:
        if Path(name).exists():
            return Path(name)
    raise ConfigError(f"no config file: neither {' nor '.join(DEFAULT_CONFIGS)} in {Path.cwd()} ({NEXT_STEP})")


def find_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config :func:`config_path` picks (what every command uses)."""
    return load_config(config_path(path))


def config_from_dict(raw: dict[str, Any], *, env: typing.Mapping[str, str] | None = None,
                     base_dir: Path | None = None) -> Config:
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    from_env = {}
    for var, (section, key) in ENV_OVERRIDES.items():
        if env and env.get(var):
            target = _table(raw, section)
            target[key] = env[var]
            from_env[f"[{section}] {key}"] = var
    try:
        intents = _intents(raw.pop("intents", []))
        cfg = _build(Config, raw, "")
        cfg = dataclasses.replace(cfg, base_dir=base_dir or Path.cwd(), intents=intents)
        _check(cfg)
    except ConfigError as exc:
        where = next((w for w in from_env if str(exc).startswith(w + ":")), None)
        if where is None:
            raise
        # the file may not even contain the key: say where the value came from
        raise ConfigError(f"{exc} (the value comes from the environment variable {from_env[where]})") from None
    return cfg


def _table(raw: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The (copied, so the caller's dict is left alone) table at ``voice.reply.openai``, made if absent."""
    table = raw
    for name in dotted.split("."):
        value = table.get(name)
        if value is not None and not isinstance(value, dict):
            return {}  # not a table: leave it for _build to report
        table[name] = dict(value or {})
        table = table[name]
    return table


def _check(cfg: Config) -> None:
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
    for i, spec in enumerate(cfg.handlers.routers):
        if ":" not in spec and "." not in spec and not spec.isidentifier():
            raise ConfigError(f"[handlers] routers[{i}]: expected 'module:attribute' or a plugin name, got {spec!r}")
    _check_reply(cfg)
    _check_matching(cfg)
    _check_late_answers(cfg.reply)
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


BUILTIN_SYNTHESIZERS = ("openai", "espeak")
MEDIA_LIFETIME_S = 3 * 86400  # how long WeChat keeps temporary media (a voice answer's media_id)


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


LLM_OWN_FIELDS = ("model", "messages", "stream")  # what handlers.llm writes itself: not for [llm] extra


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


def _intents(raw: Any) -> list[IntentConfig]:
    """``[[intents]]`` tables, each error naming ``[[intents]][i] key``."""
    if not isinstance(raw, list):
        raise ConfigError(f"[[intents]]: expected an array of tables (write each as [[intents]]), got {raw!r}")
    out = []
    for i, table in enumerate(raw):
        if not isinstance(table, dict):
            raise ConfigError(f"[[intents]][{i}]: expected a table, got {table!r}")
        out.append(_build(IntentConfig, table, "intents", label=f"[[intents]][{i}]"))
    return out


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(str(a).lower() if isinstance(a, bool) else repr(a) for a in typing.get_args(tp))
    if origin is types.UnionType:  # ``X | None``: TOML has no null, so a value given must be an X
        return _describe(typing.get_args(tp)[0])
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(tp: Any, value: Any, where: str, section: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is types.UnionType:
        return _coerce(typing.get_args(tp)[0], value, where, section)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return _build(tp, value, section)
    if origin is list and isinstance(value, list):
        item = typing.get_args(tp)[0]
        return [_coerce(item, v, f"{where}[{i}]", section) for i, v in enumerate(value)]
    if origin is Literal:  # by type too: TOML's 1 is not true
        ok = any(type(value) is type(a) and value == a for a in typing.get_args(tp))
    elif origin is dict:  # a free-form table (e.g. [llm] extra): passed on as it is
        ok = isinstance(value, dict)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = origin is None and isinstance(value, tp)
    if not ok:
        raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _build(cls: type, raw: dict[str, Any], section: str, label: str | None = None) -> Any:
    """Build dataclass ``cls`` from a TOML table, naming ``[section] key`` (or ``label key``) in every error."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("base_dir", "intents")}

    def where(name: str) -> str:
        if label:
            return f"{label} {name}"
        return f"[{section}] {name}" if section else f"[{name}]"

    for name in raw:
        if name not in fields:
            if not section and not label:  # the top level holds sections (and [[intents]])
                raise ConfigError(f"[{name}]: unknown section (expected one of: {', '.join(fields)}, [[intents]])")
            raise ConfigError(f"{where(name)}: unknown key (expected one of: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{section}.{name}" if section else name
        if name in raw:
            kwargs[name] = _coerce(hints[name], raw[name], where(name), sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if dataclasses.is_dataclass(hints[name]):
                kwargs[name] = _build(hints[name], {}, sub)
            else:
                raise ConfigError(f"{where(name)}: missing; expected {_describe(hints[name])}")
    return cls(**kwargs)
