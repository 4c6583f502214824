"""What every recognizer shares: the clip it works on, its error, and its interface."""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.voice.chain import ChainError

log = logging.getLogger("bot.voice")


Try = tuple[str, str, float]
"""One recognizer's turn in the chain: ``(name, outcome, seconds)``; outcome ``"ok"`` or the failure's reason
(``empty_final``, ``timeout``, ``unavailable``, ``crashed``…)."""


@dataclass
class Transcript:
    """The chain's answer: text and which recognizer made it, or why there is none; ``tries`` says how long each
    recognizer tried and how it ended, in order (for the ``bot.message`` line: ``bot.ops.trace.add_recognition``)."""

    text: str | None
    source: str | None
    error: str | None = None
    steps: list[tuple[str, float]] = field(default_factory=list)
    tries: list[Try] = field(default_factory=list)


class RecognitionError(ChainError):
    """A recognizer could not produce a transcript; ``reason`` is a short code for logs and metrics."""


@dataclass
class VoiceClip:
    """One voice message's audio, downloaded and transcoded at most once for the whole chain.

    ``clock`` and ``sleep`` are the chain's time (``time.monotonic`` and ``time.sleep`` unless a test gives a fake
    pair): recognizers read deadlines and wait with them, so a test plays WeChat's clock without waiting for it.
    """

    msg_id: str
    media_id: str
    media_id_16k: str | None
    fmt: str
    recognition: str | None
    download: Callable[[str], bytes]
    max_mp3_bytes: int = 1_000_000
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    steps: list[tuple[str, float]] = field(default_factory=list)
    _source: bytes | None = None
    _mp3: Any = None

    @classmethod
    def from_push(cls, data: dict[str, Any], msg_id: str, download: Callable[[str], bytes], *,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> VoiceClip:
        return cls(msg_id=msg_id, media_id=str(data.get("MediaId") or ""),
                   media_id_16k=(data.get("MediaId16K") or None), fmt=str(data.get("Format") or ""),
                   recognition=_text(data.get("Recognition")), download=download, clock=clock, sleep=sleep)

    def voice_id(self, namespace: str) -> str:
        """Unique per message, the same for each of WeChat's retries of it."""
        return "wvb" + hashlib.sha1(f"{namespace}:{self.msg_id}".encode()).hexdigest()[:29]

    def timed(self, step: str, started: float, **fields: Any) -> None:
        """Record ``step`` as lasting from ``started`` (a :attr:`clock` value) until now."""
        elapsed = self.clock() - started
        self.steps.append((step, elapsed))
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        log.debug("voice step=%s msg_id=%s ms=%.1f%s", step, self.msg_id, elapsed * 1000, extra)  # see bot.message

    def source(self) -> bytes:
        """The pushed audio: ``MediaId16K`` when offered (falling back to ``MediaId``), else ``MediaId``."""
        if self._source is None:
            from bot.wechat.errors import InvalidMediaError, WeChatAPIError
            started = self.clock()
            candidates = [m for m in (self.media_id_16k, self.media_id) if m]
            if not candidates:
                raise RecognitionError("no_media", "the push has no MediaId")
            for i, media_id in enumerate(candidates):
                try:
                    self._source = self.download(media_id)
                    break
                except InvalidMediaError as exc:
                    if i == len(candidates) - 1:
                        raise RecognitionError("invalid_media", str(exc)) from None
                    log.warning("voice msg_id=%s MediaId16K refused (%s); trying MediaId", self.msg_id, exc)
                except WeChatAPIError as exc:
                    raise RecognitionError("download_failed", str(exc)) from None
            self.timed("download", started, bytes=len(self._source or b""))
        assert self._source is not None
        return self._source

    def mp3(self) -> Any:
        """The audio as WeChat wants it: mp3, 16 kHz, mono, ≤ 1 MB (a ``bot.voice.audio.Transcoded``)."""
        if self._mp3 is None:
            from bot.voice.audio import AudioError, transcode_to_mp3
            source = self.source()
            started = self.clock()
            try:
                self._mp3 = transcode_to_mp3(source, max_bytes=self.max_mp3_bytes)
            except AudioError as exc:
                raise RecognitionError("bad_audio", str(exc)) from None
            self.timed("transcode", started, seconds=f"{self._mp3.duration_s:.1f}", bytes=len(self._mp3.data),
                       trimmed=self._mp3.trimmed)
        return self._mp3


def _text(value: Any) -> str | None:
    """A pushed text field, or None when it is absent, empty or not text (``<Recognition><a/></Recognition>``)."""
    return value.strip() or None if isinstance(value, str) else None


class Recognizer(Protocol):
    """Turns a clip into text before ``deadline`` (a ``clip.clock()`` value: ``time.monotonic()`` outside tests),
    or raises RecognitionError."""

    name: str

    def recognize(self, clip: VoiceClip, deadline: float) -> str: ...


Transcriber = Callable[[dict[str, Any], str], Transcript]
