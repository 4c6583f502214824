"""``wechat``: download, transcode, ``addvoicetorecofortext``, then poll ``queryrecoresultfortext``."""
from __future__ import annotations

import time

from bot.voice.recognizers.base import RecognitionError, VoiceClip, log
from bot.wechat.client import WeChatAPI
from bot.wechat.errors import (
    BusyError,
    DuplicateVoiceIdError,
    InvalidVoiceError,
    TransportError,
    VoiceExpiredError,
    WeChatAPIError,
)


class WeChatRecognizer:
    """WeChat's own recognition: results must be fetched within ``window_s`` of the upload."""

    name = "wechat"

    def __init__(self, client: WeChatAPI, *, lang: str = "zh_CN", window_s: float = 10.0,
                 poll_initial_s: float = 0.2, poll_max_s: float = 0.5, busy_retries: int = 3) -> None:
        self.client, self.lang, self.window_s = client, lang, window_s
        self.poll_initial_s, self.poll_max_s, self.busy_retries = poll_initial_s, poll_max_s, busy_retries

    def recognize(self, clip: VoiceClip, deadline: float) -> str:
        mp3 = clip.mp3()
        voice_id = clip.voice_id(self.client.appid)
        uploaded_at = time.monotonic()
        self._upload(clip, voice_id, mp3.data, deadline)
        return self._poll(clip, voice_id, min(deadline, uploaded_at + self.window_s))

    def _upload(self, clip: VoiceClip, voice_id: str, data: bytes, deadline: float) -> None:
        started = time.perf_counter()
        delay = self.poll_initial_s or 0.05
        for attempt in range(self.busy_retries + 1):
            try:
                self.client.voice.add(voice_id, data, self.lang)
                clip.timed("upload", started, voice_id=voice_id, attempts=attempt + 1)
                return
            except DuplicateVoiceIdError:
                clip.timed("upload", started, voice_id=voice_id, duplicate="polling the earlier upload")
                return
            except InvalidVoiceError as exc:
                raise RecognitionError("audio_rejected", str(exc)) from None
            except (BusyError, TransportError) as exc:
                if attempt == self.busy_retries or time.monotonic() + delay >= deadline:
                    raise RecognitionError("upload_failed", str(exc)) from None
                log.warning("voice msg_id=%s upload: %s; retrying in %.2fs", clip.msg_id, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.poll_max_s)
            except WeChatAPIError as exc:
                raise RecognitionError("upload_failed", str(exc)) from None

    def _poll(self, clip: VoiceClip, voice_id: str, window_end: float) -> str:
        started = time.perf_counter()
        delay, polls = self.poll_initial_s, 0
        while True:
            if delay:
                time.sleep(max(0.0, min(delay, window_end - time.monotonic())))
            if time.monotonic() >= window_end:
                clip.timed("poll", started, polls=polls, result="window closed")
                raise RecognitionError("timeout", f"no result within the {self.window_s:g}s window")
            polls += 1
            try:
                text = self.client.voice.query(voice_id, self.lang)
            except (BusyError, TransportError) as exc:
                log.warning("voice msg_id=%s poll %d: %s; backing off", clip.msg_id, polls, exc)
                delay = min(max(delay, 0.05) * 2, self.poll_max_s)
                continue
            except VoiceExpiredError as exc:
                clip.timed("poll", started, polls=polls, result="expired")
                raise RecognitionError("timeout", str(exc)) from None
            except WeChatAPIError as exc:
                clip.timed("poll", started, polls=polls, result="error")
                raise RecognitionError("query_failed", str(exc)) from None
            if text.strip():
                clip.timed("poll", started, polls=polls)
                return text.strip()
            delay = min(max(delay, 0.05) * 1.5, self.poll_max_s)
