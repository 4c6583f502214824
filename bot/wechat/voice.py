"""The ``voice`` API group: WeChat's speech recognition and translation, which wechatpy lacks."""
from __future__ import annotations

from typing import Any

import requests
from wechatpy.client.api.base import BaseWeChatAPI

from bot.wechat.errors import TransportError


def _json_object(api: str, result: Any) -> dict[str, Any]:
    """wechatpy hands back the raw response when the body is not JSON: that is a transport failure."""
    if isinstance(result, requests.Response) or not isinstance(result, dict):
        raise TransportError(api, None, "answer is not JSON")
    return result


class WeChatVoice(BaseWeChatAPI):
    """``addvoicetorecofortext``, ``queryrecoresultfortext`` and ``translatecontent``."""

    def add(self, voice_id: str, mp3: bytes, lang: str = "zh_CN") -> None:
        """Upload mp3 (16 kHz, mono, ≤ 1 MB) for recognition; the result must be fetched within 10 s."""
        api = "media/voice/addvoicetorecofortext"
        _json_object(api, self._post(api, params={"format": "mp3", "voice_id": voice_id, "lang": lang},
                                     files={"media": ("voice.mp3", mp3, "audio/mpeg")}))

    def query(self, voice_id: str, lang: str = "zh_CN") -> str:
        """The transcript so far; ``""`` means not ready yet (extra fields such as ``is_end`` are ignored)."""
        api = "media/voice/queryrecoresultfortext"
        result = _json_object(api, self._post(api, params={"voice_id": voice_id, "lang": lang}))
        return str(result.get("result") or "")

    def translate(self, text: str, lfrom: str = "zh_CN", lto: str = "en_US") -> str:
        """Translate up to 600 bytes of UTF-8 text between zh_CN and en_US."""
        api = "media/voice/translatecontent"
        result = _json_object(api, self._post(api, params={"lfrom": lfrom, "lto": lto},
                                              data=text.encode("utf-8")))
        return str(result.get("to_content", ""))
