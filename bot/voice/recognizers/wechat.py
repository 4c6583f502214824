"""``wechat``: download, transcode, ``addvoicetorecofortext``, then poll ``queryrecoresultfortext``.

How an answer is read (WeChat documents only ``result``; live accounts also send ``is_end``):

- ``is_end: true`` is the result: its text is the transcript, and an empty one means recognition finished with
  nothing — what accounts whose recognition WeChat retired answer every time — so the next recognizer gets the
  message at once (reason ``empty_final``) instead of polling out the window;
- ``is_end: false`` means not final yet, with or without text: keep polling;
- no ``is_end`` (the documented form): text is the transcript, empty means not ready yet.

A partial text still unfinished when the window (or this recognizer's share of the message's time) closes is not
used: it is a prefix cut anywhere ("打开客厅的" of "打开客厅的灯吗"), and acting on half a command is worse than
asking again. The reason is ``timeout`` and the log line says how much had been heard.
"""
from __future__ import annotations

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
        if clip.clock() >= deadline:  # e.g. a job a worker took over after the share: no upload that nobody polls
            raise RecognitionError("timeout", "no time left for WeChat's recognition; the next recognizer takes over")
        mp3 = clip.mp3()
        voice_id = clip.voice_id(self.client.appid)
        uploaded_at = clip.clock()
        self._upload(clip, voice_id, mp3.data, deadline)
        window_end = uploaded_at + self.window_s
        return self._poll(clip, voice_id, min(deadline, window_end), gave_way=deadline < window_end)

    def _upload(self, clip: VoiceClip, voice_id: str, data: bytes, deadline: float) -> None:
        started = clip.clock()
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
                if attempt == self.busy_retries or clip.clock() + delay >= deadline:
                    raise RecognitionError("upload_failed", str(exc)) from None
                log.warning("voice msg_id=%s upload: %s; retrying in %.2fs", clip.msg_id, exc, delay)
                clip.sleep(delay)
                delay = min(delay * 2, self.poll_max_s)
            except WeChatAPIError as exc:
                raise RecognitionError("upload_failed", str(exc)) from None

    def _poll(self, clip: VoiceClip, voice_id: str, until: float, *, gave_way: bool) -> str:
        """Poll until a final answer or ``until``; ``gave_way``: ``until`` is the chain's share, not the window."""
        started = clip.clock()
        delay, polls, heard = self.poll_initial_s, 0, ""
        while True:
            if delay:
                clip.sleep(max(0.0, min(delay, until - clip.clock())))
            if clip.clock() >= until:
                clip.timed("poll", started, polls=polls, result="out of time")
                why = (f"its share of the message's time ran out ({until - started:.1f}s of polling); the next "
                       "recognizer takes over") if gave_way else f"no result within the {self.window_s:g}s window"
                partial = f"; {len(heard)} characters heard so far, not used (not final)" if heard else ""
                raise RecognitionError("timeout", why + partial)
            polls += 1
            try:
                answer = self.client.voice.result(voice_id, self.lang)
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
            if answer.final:
                clip.timed("poll", started, polls=polls, is_end=answer.is_end)
                if not answer.text:
                    raise RecognitionError("empty_final", "WeChat's recognition finished and heard nothing "
                                                          "(is_end with an empty result)")
                return answer.text
            heard = answer.text or heard
            delay = min(max(delay, 0.05) * 1.5, self.poll_max_s)
