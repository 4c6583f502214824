"""The configuration's shape: one frozen dataclass per TOML section, with the defaults ``config.example.toml``
documents. Data only: reading it is ``bot.config.loading``, the rules that refuse a config ``bot.config.rules``.
"""
from __future__ import annotations

import dataclasses
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
    """``[voice.openai]``: any OpenAI-compatible ``POST /v1/audio/transcriptions`` (bot/voice/recognizers/openai.py)."""

    url: str = ""
    model: str = "whisper-1"
    api_key: str = field(default="", repr=False)  # or VOICEBOT_STT_API_KEY
    timeout_s: float = 8.0
    language: str = ""  # "": from [voice] lang (zh, en); "omit": not sent; else sent as it is ("yue", ...)
    prompt: str = ""  # words or a sentence in the audio's language that guide the recognizer ("" sends none)
    prompt_intents: bool = False  # also put the [[intents]] keywords in the prompt, a list of the words the bot knows


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
    # permanent material (accounts without temporary media) is deleted this long after its answer went
    material_grace_s: float = 86400.0
    openai: OpenAISpeechConfig = field(default_factory=OpenAISpeechConfig)


@dataclass(frozen=True)
class VoiceConfig:
    recognizers: list[str] = field(default_factory=lambda: ["push", "wechat"])
    lang: Literal["zh_CN", "en_US"] = "zh_CN"
    use_push_recognition: bool = True
    window_s: float = 10.0
    # With a fallback after them, WeChat's own recognizers (push, wechat) get this much of the message's time, so
    # that the fallback still answers within WeChat's first try (5 s, of which [reply] budget_s 4.5 s).
    wechat_share_s: float = 2.5
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
    # how far WeChat's clock and ours may disagree: a try's 5 s run from WeChat's send time (its timestamp and
    # when the connection came in), estimated within this (bot/core/timing.py)
    clock_skew_s: float = 1.0
    # A text or event message's handler runs before anything is written; answered within this (and within half
    # the try's budget) it costs one store write. Still running then: the claim is written and the usual path
    # goes on. 0: claim first, always (README "Fast handlers").
    fast_path_s: float = 0.5


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
class IntentConfig:
    """One ``[[intents]]`` table: a no-code intent (bot/core/intents.py)."""

    name: str
    reply: str
    patterns: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    priority: int = 0
    fuzzy: float | None = None  # None: [matching] fuzzy_threshold


@dataclass(frozen=True)
class WeComAppConfig:
    """``[accounts.NAME]`` with ``kind = "wecom_app"``: a WeCom (企业微信) self-built app's callback and API."""

    corp_id: str
    agent_id: int
    secret: str = field(repr=False)  # the app's Secret (one access token per app secret)
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)  # required: WeCom's callbacks are always encrypted
    api_base_url: str = "https://qyapi.weixin.qq.com"
    http_timeout_s: float = 5.0


KINDS = ("official_account", "wecom_app")


@dataclass(frozen=True)
class AccountInfo:
    """Which account a config answers for: ``ctx.account`` (its name, ``""`` for a [wechat] config),
    ``ctx.channel`` (its kind) and, for a WeCom app, the app's ``agent_id``."""

    name: str = ""
    kind: Literal["official_account", "wecom_app"] = "official_account"
    agent_id: int = 0

    @property
    def label(self) -> str:
        """The name logs and metrics show: ``default`` for the unnamed account of a [wechat] config."""
        return self.name or "default"


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
    intents: list[IntentConfig] = field(default_factory=list)
    base_dir: Path = Path(".")
    # The sections handler packages declare (``[llm]``, ``[forward]``, yours: bot/config/sections.py), by name;
    # read as attributes: ``config.llm``.
    sections: dict[str, Any] = field(default_factory=dict)
    # Which account this config answers for (bot/config/accounts.py): the unnamed one of a [wechat] config, or
    # one of ``[accounts.NAME]``. A config with [accounts] lists one per account in ``accounts``.
    account: AccountInfo = field(default_factory=lambda: AccountInfo())
    accounts: tuple[Config, ...] = ()

    def __getattr__(self, name: str) -> Any:
        """A declared section (``config.llm``); only called when no field has the name."""
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__!r} has no section or attribute {name!r}")

    def replace(self, **sections: Any) -> Config:
        """A copy with some sections or keys changed: ``cfg.replace(server={"port": 9000})``, also for declared
        sections (``cfg.replace(llm={"timeout_s": 1})``)."""
        changes: dict[str, Any] = {}
        declared = dict(self.sections)
        for name, value in sections.items():
            current = getattr(self, name)
            if isinstance(value, dict) and dataclasses.is_dataclass(current) and not isinstance(current, type):
                value = dataclasses.replace(current, **value)
            if name in declared:
                declared[name] = value
            else:
                changes[name] = value
        return dataclasses.replace(self, **changes, sections=declared)

    def served(self) -> tuple[Config, ...]:
        """Every account this config answers for: its ``accounts``, or itself (a [wechat] config)."""
        return self.accounts or (self,)


BUILTIN_SYNTHESIZERS = ("openai", "espeak")
MEDIA_LIFETIME_S = 3 * 86400  # how long WeChat keeps temporary media (a voice answer's media_id)
