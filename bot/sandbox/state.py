"""The sandbox's memory: tokens, media and material, voice clips, recognition uploads, faults, users, the call log.

Kept apart from the HTTP layer so the rules (which token is still valid, which fault fires next, which
text a tone stands for) read in one place. All methods are thread-safe: the server is threaded.
"""
from __future__ import annotations

import itertools
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.users import Users

# Clip tones: 325, 375, ... 3275 Hz. Spaced 50 Hz, and offset by 25 Hz from multiples of 50, so a
# clip played at twice or half its speed (a transcode that got the sample rate wrong) lands exactly
# between two grid tones and is recognised as nothing rather than as another clip.
FREQUENCY_GRID: tuple[float, ...] = tuple(325.0 + 50.0 * k for k in range(60))
# Hand tones out spread over the band (stride coprime with the grid size), not neighbour by neighbour.
_ALLOCATION_ORDER = tuple(FREQUENCY_GRID[(i * 7) % len(FREQUENCY_GRID)] for i in range(len(FREQUENCY_GRID)))

SETTINGS_DEFAULTS: dict[str, Any] = {
    "appid": "wxsandbox",
    "appsecret": "sandbox-secret",
    "recognition_latency_s": 0.3,
    "window_s": 10.0,
    # queryrecoresultfortext (query_voice): answers carry is_end as live accounts' do (false: the documented form,
    # {"result"} alone, where empty means "not ready"); before the latency has passed they hold the part of the text
    # heard so far (partial results); a retired recognition answers {"result": "", "is_end": true} at once, every
    # time, and voice pushes carry an empty <Recognition> (register_voice says so in "recognition").
    "recognition_is_end": True,
    "recognition_partial": True,
    "recognition_retired": False,
    "token_expires_in": 7200,
    "token_grace_s": 0.0,
    "max_voice_bytes": 1_000_000,
    # The account: a verified one has the customer-service API (send, typing) and temporary media upload;
    # an unverified (e.g. personal subscription) account gets 48001 on the first and, reportedly, the second.
    "customer_service": True,
    "temporary_media": True,
    # Customer service: cs_quota messages within cs_window_s of the user's last message (bot/sandbox/users.py).
    "cs_quota": 5,
    "cs_window_s": 48 * 3600.0,
    "assume_user_messaged": True,
    "typing_window_s": 30.0,
    "typing_lasts_s": 15.0,
    "max_text_bytes": 2048,
    # Voice media (bot/sandbox/media_api.py): 2 MB, 60 s, temporary media live 3 days, 1000 permanent items.
    "max_media_bytes": 2 * 1024 * 1024,
    "max_media_seconds": 60.0,
    "media_ttl_s": 3 * 24 * 3600.0,
    "max_materials": 1000,
    "speech_latency_s": 0.0,  # /v1/audio/speech (bot/sandbox/speech_api.py): delay before each answer
    "speech_seconds_per_char": 0.2,  # its speech lasts this long per character of the input
    # /v1/audio/transcriptions (bot/sandbox/speech_api.py): delay before each answer, and the bearer key ("" = any)
    "transcription_latency_s": 0.0,
    "transcription_api_key": "",
    # The OpenAI-compatible chat service (bot/sandbox/chat_api.py): delay before an answer starts, streaming rate,
    # the scale of its timed answers (12 s story, 40 s essay, "用 N 秒回答"), the bearer key it wants ("" = any),
    # the models it has, and a stream that stops after that many chunks (0 = never).
    "chat_latency_s": 0.0,
    "chat_chunks_per_s": 20.0,
    "chat_chunk_chars": 4,
    "chat_time_scale": 1.0,
    "chat_api_key": "",
    "chat_models": ["sandbox-chat"],
    "chat_break_after_chunks": 0,
    # The WeCom (企业微信) self-built app the sandbox also plays under /wecom (bot/sandbox/wecom_api.py).
    "wecom_corp_id": "wwsandbox",
    "wecom_agent_id": 1000002,
    "wecom_secret": "sandbox-wecom-secret",
    "wecom_per_user_per_minute": 30,  # message/send to one user per minute; then 45009
    "wecom_users": [],  # UserIDs in the app's visible range ([]: everyone); others come back in invaliduser
}


class SandboxError(ValueError):
    """A control request the sandbox cannot honour (unknown setting, no tone left, ...)."""


@dataclass
class Token:
    kind: str  # "classic" | "stable"
    expires_at: float
    revoked_at: float | None = None


@dataclass
class Media:
    """Audio the account holds: a user's voice message (``user``), or what the bot uploaded (``temporary``
    through media/upload, ``permanent`` through add_material); ``text`` is what it "says" (its tone)."""

    data: bytes
    content_type: str
    filename: str
    text: str | None = None
    frequency: float | None = None
    kind: str = "user"  # "user" | "temporary" | "permanent"
    created_at: float | None = None  # state.clock() when stored
    duration_s: float | None = None  # decoded length, for uploads
    deleted: bool = False  # permanent material removed by del_material


@dataclass
class VoiceUpload:
    added_at: float
    text: str
    lang: str
    frequency: float | None


@dataclass
class Fault:
    endpoint: str
    errcode: int
    remaining: int
    http_status: int | None = None
    body: str | None = None

    def matches(self, path: str) -> bool:
        return path.rstrip("/").endswith("/" + self.endpoint.strip("/"))


@dataclass
class SandboxState:
    """Everything the fake WeChat remembers; ``clock`` is injectable so rules are testable without sleeps."""

    settings: dict[str, Any] = field(default_factory=lambda: dict(SETTINGS_DEFAULTS))
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.tokens: dict[str, Token] = {}
        self.stable_token: str | None = None
        self.media: dict[str, Media] = {}
        self.clips: dict[str, float] = {}  # text -> tone frequency
        self.voices: dict[str, VoiceUpload] = {}
        self.faults: list[Fault] = []
        self.call_log: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.translations: dict[str, str] = {}
        self.materials: dict[str, Media] = {}  # permanent material, kept (marked deleted) after del_material
        self.users = Users(self.setting, lambda: self.clock(), self.lock)
        self._ids = itertools.count(1)

    # ---------------------------------------------------------------- settings
    def configure(self, **settings: Any) -> None:
        unknown = set(settings) - set(SETTINGS_DEFAULTS)
        if unknown:
            raise SandboxError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(SETTINGS_DEFAULTS)}")
        for name, value in settings.items():
            _check_type(name, value)
        with self.lock:
            self.settings.update(settings)

    def setting(self, name: str) -> Any:
        with self.lock:
            return self.settings[name]

    # ---------------------------------------------------------------- tokens
    def _expires_in(self) -> int | float:
        value = self.settings["token_expires_in"]
        return int(value) if float(value).is_integer() else float(value)

    def issue_classic_token(self) -> tuple[str, int | float]:
        """A new classic token; earlier classic tokens die ``token_grace_s`` later (stable ones live on)."""
        with self.lock:
            now = self.clock()
            cutoff = now + float(self.settings["token_grace_s"])
            for tok in self.tokens.values():
                if tok.kind == "classic" and (tok.revoked_at is None or tok.revoked_at > cutoff):
                    tok.revoked_at = cutoff
            token = secrets.token_urlsafe(32)
            expires_in = self._expires_in()
            self.tokens[token] = Token("classic", now + expires_in)
            return token, expires_in

    def issue_stable_token(self, force_refresh: bool) -> tuple[str, int | float]:
        """The current stable token until it expires; ``force_refresh`` replaces it (the old one dies)."""
        with self.lock:
            now = self.clock()
            current_id = self.stable_token or ""
            current = self.tokens.get(current_id)
            if current and not force_refresh and current.expires_at > now and current.revoked_at is None:
                remaining = current.expires_at - now  # WeChat answers the time left, not a fresh 7200
                return current_id, math.floor(remaining) if remaining >= 1 else round(remaining, 3)
            if current and current.revoked_at is None:
                current.revoked_at = now
            token = secrets.token_urlsafe(32)
            expires_in = self._expires_in()
            self.tokens[token] = Token("stable", now + expires_in)
            self.stable_token = token
            return token, expires_in

    def issue_wecom_token(self) -> tuple[str, int | float]:
        """WeCom's gettoken: the app's current token while it lives (a fetch does not revoke it), else a new one."""
        with self.lock:
            now = self.clock()
            live = [(t, tok) for t, tok in self.tokens.items() if tok.kind == "wecom" and tok.expires_at > now]
            if live:
                token, tok = live[-1]
                return token, max(1, math.floor(tok.expires_at - now))
            token = secrets.token_urlsafe(32)
            self.tokens[token] = Token("wecom", now + self._expires_in())
            return token, self._expires_in()

    def check_token(self, token: str | None) -> tuple[int, str] | None:
        """None when usable, else (errcode, errmsg) as WeChat answers: 41001, 42001 or 40001."""
        if not token:
            return 41001, "access_token missing"
        with self.lock:
            tok = self.tokens.get(token)
            now = self.clock()
            if tok is None:
                return 40001, "invalid credential, access_token is invalid or not latest"
            if now >= tok.expires_at:
                return 42001, "access_token expired"
            if tok.revoked_at is not None and now >= tok.revoked_at:
                return 40001, "invalid credential, access_token is invalid or not latest"
            return None

    # ---------------------------------------------------------------- media and clips
    def new_media_id(self) -> str:
        return f"sbx{next(self._ids):04d}_{secrets.token_urlsafe(12)}"

    def put_media(self, media_id: str, media: Media) -> str:
        """Store user or temporary media (``permanent`` goes to :attr:`materials`), stamped with the time."""
        with self.lock:
            if media.created_at is None:
                media.created_at = self.clock()
            (self.materials if media.kind == "permanent" else self.media)[media_id] = media
            if media.text is not None and media.frequency is not None:
                self.bind_clip(media.text, media.frequency)
        return media_id

    def get_media(self, media_id: str) -> Media | None:
        """Temporary (and user) media for media/get, until ``media_ttl_s`` has passed (WeChat: 3 days)."""
        with self.lock:
            media = self.media.get(media_id)
            if media is None or media.created_at is None:
                return media
            return None if self.clock() - media.created_at > float(self.settings["media_ttl_s"]) else media

    def get_material(self, media_id: str) -> Media | None:
        """Permanent material not deleted."""
        with self.lock:
            media = self.materials.get(media_id)
            return None if media is None or media.deleted else media

    def find_media(self, media_id: str) -> Media | None:
        """Any media a message may name: live temporary or user media, or permanent material."""
        return self.get_media(media_id) or self.get_material(media_id)

    def material_count(self) -> int:
        with self.lock:
            return sum(not m.deleted for m in self.materials.values())

    def delete_material(self, media_id: str) -> bool:
        """False when there is no such (undeleted) material."""
        with self.lock:
            media = self.get_material(media_id)
            if media is None:
                return False
            media.deleted = True
            return True

    def clip_frequency(self, text: str) -> float:
        """The tone standing for ``text``: the same text keeps its tone, a new one takes the next free."""
        with self.lock:
            if text in self.clips:
                return self.clips[text]
            used = set(self.clips.values())
            for freq in _ALLOCATION_ORDER:
                if freq not in used:
                    self.clips[text] = freq
                    return freq
        raise SandboxError(f"all {len(FREQUENCY_GRID)} clip tones are taken; reset the clips")

    def bind_clip(self, text: str, frequency: float) -> None:
        """Make ``frequency`` stand for ``text`` (for audio uploaded through the control API)."""
        with self.lock:
            for other, freq in list(self.clips.items()):
                if freq == frequency and other != text:
                    raise SandboxError(f"{frequency:g} Hz already stands for {other!r}")
            self.clips[text] = float(frequency)

    def text_for(self, frequency: float | None) -> str:
        if frequency is None:
            return ""
        with self.lock:
            return next((t for t, f in self.clips.items() if f == frequency), "")

    def clip_frequencies(self) -> list[float]:
        with self.lock:
            return sorted(set(self.clips.values()))

    # ---------------------------------------------------------------- recognition uploads
    def add_voice(self, voice_id: str, upload: VoiceUpload) -> bool:
        """False when ``voice_id`` was already used (WeChat wants them unique)."""
        with self.lock:
            if voice_id in self.voices:
                return False
            self.voices[voice_id] = upload
            return True

    def voice_known(self, voice_id: str) -> bool:
        with self.lock:
            return voice_id in self.voices

    def query_voice(self, voice_id: str) -> tuple[dict[str, Any] | None, str]:
        """(answer, "") while the window is open, or (None, reason). The answer is the text so far and, unless
        ``recognition_is_end`` is off, ``is_end``: see the settings above."""
        with self.lock:
            upload = self.voices.get(voice_id)
            if upload is None:
                return None, "voice_id not found"
            age = self.clock() - upload.added_at
            if age > float(self.settings["window_s"]):
                return None, f"voice_id not found: its {self.settings['window_s']:g}s result window has passed"
            with_is_end = bool(self.settings["recognition_is_end"])
            if self.settings["recognition_retired"]:
                return ({"result": "", "is_end": True} if with_is_end else {"result": ""}), ""
            latency = float(self.settings["recognition_latency_s"])
            if age >= latency:
                return ({"result": upload.text, "is_end": True} if with_is_end else {"result": upload.text}), ""
            if not with_is_end:
                return {"result": ""}, ""
            heard = int(len(upload.text) * age / latency) if self.settings["recognition_partial"] else 0
            return {"result": upload.text[:heard], "is_end": False}, ""

    # ---------------------------------------------------------------- faults
    def add_fault(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise SandboxError("times must be >= 1")
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, path: str) -> Fault | None:
        """The oldest pending fault for ``path``, consumed by one call."""
        with self.lock:
            for fault in self.faults:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    # ---------------------------------------------------------------- records
    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.call_log.append(entry)

    def record_message(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append(message)

    def reset(self) -> None:
        """Forget calls, messages, faults, recognition uploads and users' windows; clips, media, material and
        tokens stay."""
        with self.lock:
            self.call_log.clear()
            self.messages.clear()
            self.faults.clear()
            self.voices.clear()
            self.users.clear()


def _check_type(name: str, value: Any) -> None:
    """A setting keeps its default's type (``"false"`` for a flag would be truthy), numbers are >= 0."""
    default = SETTINGS_DEFAULTS[name]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    else:
        ok = isinstance(value, type(default))
    if not ok:
        kind = "true or false" if isinstance(default, bool) else (
            "a number >= 0" if isinstance(default, (int, float)) else type(default).__name__)
        raise SandboxError(f"setting {name}: expected {kind}, got {value!r}")
