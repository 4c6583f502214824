"""A WeCom (企业微信) self-built app's API, with the face delivery already talks to.

wechatpy's ``wechatpy.enterprise.WeChatClient`` with what :class:`bot.wechat.client.SharedToken` adds (the token
in the shared store, one refresh, typed errors: ``errors.wecom_error_for``), and API groups shaped like the
Official Account client's, so delivery sends late answers the same way:

- ``client.message.send_text(user, text)`` / ``send_image`` / ``send_voice``: ``POST message/send`` with the
  app's ``agentid`` (no 48-hour window; WeCom's own limits and errcodes). A user WeCom lists in ``invaliduser``
  is a :class:`RecipientError`, not a success;
- ``client.media.download`` (``media/get``), ``upload_voice`` (``media/upload?type=voice``, AMR only);
- ``client.post("message/custom/...")`` and ``client.voice`` raise :class:`UnsupportedError`: a WeCom app has no
  customer-service typing, and no recognition or translation.

Tokens: ``GET /cgi-bin/gettoken?corpid&corpsecret`` — one token per app secret.
"""
from __future__ import annotations

import logging
from typing import Any

import requests
from wechatpy.client.api.base import BaseWeChatAPI
from wechatpy.enterprise import WeChatClient as WeComClient

from bot.config import WeChatConfig
from bot.store import Store
from bot.wechat.client import SharedToken, api_name
from bot.wechat.errors import (
    APIUnauthorizedError,
    MediaFormatError,
    RecipientError,
    TransportError,
    UnsupportedError,
    wecom_error_for,
)
from bot.wechat.media import UploadedVoice, answer_of, voice_file

log = logging.getLogger("bot.wechat")


class WeComMessage(BaseWeChatAPI):
    """``message/send`` to one user, as the customer-service group's ``send_*`` (``touser`` is the UserID)."""

    def send_text(self, user: str, content: str) -> dict[str, Any]:
        return self.send(user, "text", {"content": content})

    def send_image(self, user: str, media_id: str) -> dict[str, Any]:
        return self.send(user, "image", {"media_id": media_id})

    def send_voice(self, user: str, media_id: str) -> dict[str, Any]:
        return self.send(user, "voice", {"media_id": media_id})

    def send(self, user: str, msgtype: str, body: dict[str, Any]) -> dict[str, Any]:
        api = "message/send"
        result = answer_of(api, self._post(api, data={"touser": user, "msgtype": msgtype,
                                                     "agentid": self._client.agent_id, msgtype: body}))
        invalid = {u.lower() for u in str(result.get("invaliduser") or "").split("|") if u}
        if user.lower() in invalid:  # errcode 0, but WeCom did not send it to this user
            raise RecipientError(api, 0, "the user is listed in invaliduser: not in the app's visible range")
        return result


class WeComVoiceMedia(BaseWeChatAPI):
    """Temporary media: the user's voice (``media/get``) and voice answers (``media/upload``, AMR only, ≤ 2 MB,
    ≤ 60 s, 3 days). WeCom has no permanent voice material."""

    def download(self, media_id: str) -> Any:
        """The response with the audio (errors are typed errors)."""
        return self._get("media/get", params={"media_id": media_id})

    def upload_voice(self, data: bytes, fmt: str = "amr") -> UploadedVoice:
        api = "media/upload"
        if fmt != "amr":
            raise MediaFormatError(api, None, f"a WeCom app takes voice as AMR only, not {fmt!r}")
        result = answer_of(api, self._post(api, params={"type": "voice"}, files={"media": voice_file(data, fmt)}))
        if not result.get("media_id"):
            raise TransportError(api, None, "answer without media_id")
        created = str(result.get("created_at") or "")  # WeCom answers it as a string
        return UploadedVoice(str(result["media_id"]), int(created) if created.isdigit() else None, permanent=False)

    def add_voice_material(self, data: bytes, fmt: str = "amr") -> UploadedVoice:
        raise APIUnauthorizedError("material/add_material", None, "a WeCom app has no permanent voice material")

    def delete_material(self, media_id: str) -> None:
        raise UnsupportedError("material/del_material", None, "a WeCom app has no permanent voice material")


class _Unsupported:
    """An API group this kind of account does not have: any call is an :class:`UnsupportedError`."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __getattr__(self, name: str) -> Any:
        def unsupported(*args: Any, **kwargs: Any) -> Any:
            raise UnsupportedError(name, None, self.what)
        return unsupported


class WeComAPI(SharedToken, WeComClient):
    """One WeCom self-built app (``corp_id`` + ``agent_id`` + its secret)."""

    error_for = staticmethod(wecom_error_for)
    message = WeComMessage()
    media = WeComVoiceMedia()
    voice = _Unsupported("a WeCom app has no speech recognition or translation API (media/voice/*)")

    def __init__(self, config: WeChatConfig, store: Store, *, agent_id: int, session: requests.Session | None = None,
                 pool_size: int = 10, account: str = "") -> None:
        super().__init__(config.appid, config.appsecret, timeout=config.http_timeout_s, auto_retry=False)
        self.agent_id = agent_id
        self.appid = config.appid  # what callers key by (voice media, recognition ids): the corp id
        self._share_token(config, store, f"access_token:wecom:{config.appid}:{agent_id}", session=session,
                          pool_size=pool_size, account=account)

    def _fetch_token(self) -> tuple[str, int]:
        return self._fetched("gettoken", lambda: self._http.get(
            f"{self.base_url}/cgi-bin/gettoken", timeout=self.timeout,
            params={"corpid": self.corp_id, "corpsecret": self.secret}))

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        if api_name(url_or_endpoint).startswith("message/custom/"):
            raise UnsupportedError(api_name(url_or_endpoint), None,
                                   "a WeCom app has no customer-service API (late answers go by message/send)")
        return super()._request(method, url_or_endpoint, **kwargs)


__all__ = ["WeComAPI", "WeComMessage", "WeComVoiceMedia"]
