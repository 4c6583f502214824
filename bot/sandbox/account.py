"""The account the sandbox plays: its clips, media, faults and settings, and the calls made to it.

What tests and ``/sandbox/*`` set the scene with; :class:`bot.sandbox.server.Sandbox` serves it over HTTP
(bot/sandbox/app.py holds the endpoints).
"""
from __future__ import annotations

from typing import Any

from bot.sandbox.state import FREQUENCY_GRID, Fault, Media, SandboxError, SandboxState
from bot.voice.audio import AudioError, decode_pcm
from bot.voice.tones import detect_tone, make_tone

_CONTENT_TYPES = {"amr": "audio/amr", "mp3": "audio/mpeg", "wav": "audio/x-wav", "spx": "audio/ogg",
                  "speex": "audio/ogg", "awb": "audio/amr-wb"}


# translatecontent's phrasebook: enough for the README's examples to answer something real. Anything else comes
# back as "[<lto>] text", a marker that says the sandbox did not translate it (register your own phrases with
# register_translation or POST /sandbox/translations).
PHRASES = {
    ("zh_CN", "en_US"): {"今天天气很好": "The weather is nice today", "早上好": "Good morning",
                         "打开客厅的灯": "Turn on the living room light"},
    ("en_US", "zh_CN"): {"good morning": "早上好", "thank you": "谢谢", "how are you": "你好吗"},
}


class SandboxAccount:
    """One fake Official Account and its API's state, without a server."""

    def __init__(self, **settings: Any) -> None:
        self.state = SandboxState()
        self.state.configure(**settings)
        self._built_with = dict(self.state.settings)  # what reset(settings=True) returns to

    def register_voice(
        self, text: str, *, duration_s: float = 2.0, fmt: str = "amr", with_16k: bool = False,
        format_16k: str = "wav",
    ) -> dict[str, Any]:
        """Store a clip that "says" ``text`` (its own tone) and return its media_id(s) and frequency.

        ``fmt`` is amr (AMR-NB 8 kHz, what WeChat's MediaId serves), mp3 or wav. ``with_16k`` also stores a
        16 kHz version (``format_16k``: wav or mp3; PyAV cannot encode AMR-WB) as MediaId16K would serve.
        ``recognition`` in the answer is what a push of it carries in ``<Recognition>`` (None: no such element).
        """
        if not text:
            raise SandboxError("text must not be empty")
        if fmt not in ("amr", "mp3", "wav"):
            raise SandboxError(f"format must be amr, mp3 or wav (got {fmt!r}); use add_media for other audio")
        if not 0 < duration_s <= 60:
            raise SandboxError("duration_s must be in (0, 60]: WeChat voice is at most 60 s")
        freq = self.state.clip_frequency(text)
        media_id = self.state.new_media_id()
        self.state.put_media(media_id, Media(make_tone(freq, duration_s, fmt=fmt), _CONTENT_TYPES[fmt],
                                             f"{media_id}.{fmt}", text, freq))
        # What the push's <Recognition> carries: nothing (the account did not turn recognition on), or, on an
        # account whose recognition WeChat retired, an empty element.
        recognition = "" if self.state.setting("recognition_retired") else None
        clip: dict[str, Any] = {"media_id": media_id, "frequency": freq, "text": text, "format": fmt,
                                "recognition": recognition}
        if with_16k:
            data = make_tone(freq, duration_s, fmt=format_16k, sample_rate=16000)
            media_16k = self.state.new_media_id()
            self.state.put_media(media_16k, Media(data, _CONTENT_TYPES[format_16k], f"{media_16k}.{format_16k}",
                                                  text, freq))
            clip["media_id_16k"] = media_16k
        return clip

    def add_media(
        self, data: bytes, *, content_type: str | None = None, filename: str = "voice.amr",
        text: str | None = None, frequency: float | None = None,
    ) -> str:
        """Store arbitrary bytes (fixtures, garbage) for media/get; returns the media_id.

        With ``text``, the audio's tone (``frequency``, else detected on the clip grid) will be recognised
        as ``text``. Without, the bytes are served as they are and never validated.
        """
        if content_type is None:
            content_type = _CONTENT_TYPES.get(filename.rsplit(".", 1)[-1].lower(), "application/octet-stream")
        if text is not None and frequency is None:
            try:
                pcm, _ = decode_pcm(data, sample_rate=16000, max_seconds=60)
            except AudioError as exc:
                raise SandboxError(f"cannot attach text to undecodable audio: {exc}") from exc
            frequency = detect_tone(pcm, 16000, FREQUENCY_GRID)
            if frequency is None:
                raise SandboxError("no clip-grid tone found in this audio: pass frequency= or use register_voice")
        media_id = self.state.new_media_id()
        self.state.put_media(media_id, Media(bytes(data), content_type, filename, text,
                                             None if frequency is None else float(frequency)))
        return media_id

    def hear(self, pcm: Any) -> tuple[str, float | None]:
        """What the account's recognition (and its transcription endpoint) makes of 16 kHz samples: the sentence
        whose clip tone they carry, and the tone (``""``/None for audio that carries none: speech, noise, a clip
        played at the wrong speed)."""
        frequency = detect_tone(pcm, 16000, self.state.clip_frequencies())
        return self.state.text_for(frequency), frequency

    def inject_fault(
        self, endpoint: str, errcode: int, times: int = 1, *, http_status: int | None = None,
        body: str | None = None,
    ) -> None:
        """The next ``times`` calls to ``endpoint`` ("send", "media/get", "stable_token"...) fail this way.

        Faults are consumed in the order they were injected; ``http_status`` (e.g. 500) and a raw
        ``body`` (e.g. malformed JSON or an HTML error page) replace the usual JSON error.
        """
        self.state.add_fault(Fault(endpoint, int(errcode), int(times), http_status, body))

    def configure(self, **settings: Any) -> None:
        """Change any setting while running (``bot.sandbox.state.SETTINGS_DEFAULTS`` lists them): the account
        kind (customer_service, temporary_media), the quota and clocks (cs_quota, cs_window_s, typing_window_s,
        ...), limits (max_text_bytes, max_media_bytes, ...), recognition (recognition_latency_s, window_s,
        recognition_is_end, recognition_partial, recognition_retired), tokens."""
        self.state.configure(**settings)

    def user_messaged(self, openid: str, *, ago_s: float = 0.0) -> dict[str, Any]:
        """``openid`` sent the account a message (``ago_s`` seconds ago): their 48 h window and quota start over.

        The sandbox never sees what users send the bot, so tests (and the testing kit) say it here; returns
        the user's window as :meth:`user` does.
        """
        return self.state.users.messaged(openid, ago_s)

    def register_translation(self, src: str, dst: str) -> None:
        """translatecontent will answer ``dst`` for ``src`` (whatever the languages)."""
        with self.state.lock:
            self.state.translations[src] = dst

    def translate(self, text: str, lfrom: str, lto: str) -> str:
        """A registered translation, else one of :data:`PHRASES`, else a stand-in that says it is one:
        ``"[en_US] " + text``."""
        with self.state.lock:
            if text in self.state.translations:
                return self.state.translations[text]
        known = PHRASES.get((lfrom, lto), {}).get(text.strip().lower() if lfrom == "en_US" else text.strip())
        if known is not None:
            return known
        return text if lfrom == lto else f"[{lto}] {text}"

    # ---------------------------------------------------------------- reading what happened
    def calls(self) -> list[dict[str, Any]]:
        """Every WeChat API call in arrival order (tokens and secrets left out of ``query``/``json``)."""
        with self.state.lock:
            return [dict(c) for c in self.state.call_log]

    def custom_messages(self) -> list[dict[str, Any]]:
        """The bodies accepted by message/custom/send, in order."""
        with self.state.lock:
            return list(self.state.messages)

    def refused_messages(self) -> list[dict[str, Any]]:
        """Every message/custom/send WeChat refused (rules, quota, token or an injected fault), in order."""
        return [{"touser": (c["json"] or {}).get("touser"), "msgtype": (c["json"] or {}).get("msgtype"),
                 "body": c["json"], "errcode": c["errcode"], "errmsg": c.get("errmsg"), "t": c["t"]}
                for c in self.calls() if c["api"] == "send" and c["errcode"] != 0]

    def typing_calls(self) -> list[dict[str, Any]]:
        """Every message/custom/typing call, accepted (errcode 0) or not, with its time (``state.clock``)."""
        return [{"touser": (c["json"] or {}).get("touser"), "command": (c["json"] or {}).get("command"),
                 "errcode": c["errcode"], "errmsg": c.get("errmsg"), "t": c["t"]}
                for c in self.calls() if c["api"] == "typing"]

    def user(self, openid: str) -> dict[str, Any]:
        """One user's customer-service window: sent, remaining, window_left_s, typing ({} if never seen)."""
        return self.state.users.describe(openid)

    def users(self) -> dict[str, dict[str, Any]]:
        """Every user the sandbox has a window for, by openid (see :meth:`user`)."""
        return self.state.users.all()

    def media_info(self, media_id: str) -> dict[str, Any] | None:
        """What a media_id holds, without its bytes: kind, format, length and what it "says" (None if unknown)."""
        with self.state.lock:
            media = self.state.media.get(media_id) or self.state.materials.get(media_id)
            if media is None:
                return None
            live = self.state.find_media(media_id) is not None
        return {"media_id": media_id, "kind": media.kind, "filename": media.filename,
                "content_type": media.content_type, "bytes": len(media.data), "duration_s": media.duration_s,
                "says": media.text, "frequency": media.frequency, "created_at": media.created_at, "live": live,
                "deleted": media.deleted}

    def media_data(self, media_id: str) -> tuple[bytes, str] | None:
        """The bytes and content type of a media_id (temporary media or permanent material)."""
        with self.state.lock:
            media = self.state.media.get(media_id) or self.state.materials.get(media_id)
            return None if media is None else (media.data, media.content_type)

    def uploads(self) -> list[dict[str, Any]]:
        """The voice the bot uploaded (temporary media and permanent material), oldest first (:meth:`media_info`)."""
        with self.state.lock:
            ids = [i for i, m in [*self.state.media.items(), *self.state.materials.items()] if m.kind != "user"]
        found = [info for info in map(self.media_info, ids) if info is not None]
        return sorted(found, key=lambda m: m["created_at"] or 0.0)

    def overview(self) -> dict[str, Any]:
        """The account and what happened to it, for ``GET /sandbox/``."""
        settings = self.state.settings
        return {
            "account": {"customer_service": settings["customer_service"],
                        "temporary_media": settings["temporary_media"]},
            "customer_service": {"messages": self.custom_messages(), "refused": self.refused_messages(),
                                 "typing": self.typing_calls(), "users": self.users()},
            "uploads": self.uploads(),
        }

    def clips(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [{"text": t, "frequency": f} for t, f in self.state.clips.items()]

    def reset(self, *, settings: bool = False) -> None:
        """Clear calls, custom messages, faults, recognition uploads and users' windows; registered clips, media
        and material stay. ``settings=True`` also puts every setting back as the sandbox was built, so a test
        that played another kind of account leaves none behind."""
        self.state.reset()
        if settings:
            self.state.configure(**self._built_with)
