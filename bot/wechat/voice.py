"""The ``voice`` API group: WeChat's speech recognition and translation, which wechatpy lacks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from wechatpy.client.api.base import BaseWeChatAPI

from bot.wechat.errors import TransportError


def _json_object(api: str, result: Any) -> dict[str, Any]:
    """wechatpy hands back the raw response when the body is not JSON: that is a transport failure."""
    if isinstance(result, requests.Response) or not isinstance(result, dict):
        raise TransportError(api, None, "answer is not JSON")
    return result


@dataclass(frozen=True)
class RecognitionResult:
    """One ``queryrecoresultfortext`` answer: the text so far and whether it is final.

    ``is_end`` is None when the answer does not carry the field (the documented form, where an empty text
    means "not ready yet"); True means recognition is over, with ``text`` as its result — an empty one means it
    heard nothing, as accounts whose recognition WeChat retired answer every time; False means more is coming
    (``text`` may hold what was recognized so far).
    """

    text: str
    is_end: bool | None

    @property
    def final(self) -> bool:
        """The answer is the result: ``is_end`` says so, or (without it) there is text."""
        return self.is_end if self.is_end is not None else bool(self.text)


def _flag(value: Any) -> bool | None:
    """``is_end`` as sent (true/false, 1/0, "true"/"false"); None when absent or unreadable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0 if value in (0, 1) else None
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    return None


class WeChatVoice(BaseWeChatAPI):
    """``addvoicetorecofortext``, ``queryrecoresultfortext`` and ``translatecontent``."""

    def add(self, voice_id: str, mp3: bytes, lang: str = "zh_CN") -> None:
        """Upload mp3 (16 kHz, mono, ≤ 1 MB) for recognition; the result must be fetched within 10 s."""
        api = "media/voice/addvoicetorecofortext"
        _json_object(api, self._post(api, params={"format": "mp3", "voice_id": voice_id, "lang": lang},
                                     files={"media": ("voice.mp3", mp3, "audio/mpeg")}))

    def result(self, voice_id: str, lang: str = "zh_CN") -> RecognitionResult:
        """The recognition's answer so far, with WeChat's undocumented ``is_end`` (see :class:`RecognitionResult`)."""
        api = "media/voice/queryrecoresultfortext"
        answer = _json_object(api, self._post(api, params={"voice_id": voice_id, "lang": lang}))
        return RecognitionResult(str(answer.get("result") or "").strip(), _flag(answer.get("is_end")))

    def query(self, voice_id: str, lang: str = "zh_CN") -> str:
        """The text so far (``""``: nothing yet, or nothing heard); :meth:`result` also says whether it is final."""
        return self.result(voice_id, lang).text

    def translate(self, text: str, lfrom: str = "zh_CN", lto: str = "en_US") -> str:
        """Translate up to 600 bytes of UTF-8 text between zh_CN and en_US."""
        api = "media/voice/translatecontent"
        result = _json_object(api, self._post(api, params={"lfrom": lfrom, "lto": lto},
                                              data=text.encode("utf-8")))
        return str(result.get("to_content", ""))
