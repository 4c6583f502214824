"""Voice media for replies: temporary media, permanent material, and which of them an account may use.

A voice reply names a ``media_id``. Temporary media (``media/upload``, 3 days) is the way when the account may
upload it; accounts refused it (48001-style "api unauthorized") can still add permanent material
(``material/add_material``) — at most 1000 items per account, so each item is deleted once delivered. Which
one an account needs is detected from WeChat's answer, not assumed, and remembered per account in the store
(with an expiry, since an account's permissions change when it is verified).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import requests
from wechatpy.client.api.media import WeChatMedia

from bot.ops.trace import Trace, add_step
from bot.store import Store
from bot.store.base import StoreError
from bot.wechat.errors import APIUnauthorizedError, InvalidMediaError, TransportError, WeChatAPIError

log = logging.getLogger("bot.wechat")

VOICE_TYPES = {"amr": "audio/amr", "mp3": "audio/mpeg", "wav": "audio/x-wav", "wma": "audio/x-ms-wma"}
TEMPORARY_VOICE = ("amr", "mp3")  # media/upload takes these for voice; add_material also wav and wma


@dataclass(frozen=True)
class UploadedVoice:
    """What WeChat answered: the ``media_id`` to reply with, when it was made (temporary media only)."""

    media_id: str
    created_at: int | None
    permanent: bool


def answer_of(api: str, result: Any) -> dict[str, Any]:
    """wechatpy hands back the raw response when the body is not JSON: that is a transport failure."""
    if isinstance(result, requests.Response) or not isinstance(result, dict):
        raise TransportError(api, None, "answer is not JSON")
    return result


def voice_file(data: bytes, fmt: str, allowed: tuple[str, ...] = TEMPORARY_VOICE) -> tuple[str, bytes, str]:
    if fmt not in allowed:
        raise ValueError(f"voice media must be one of {', '.join(allowed)}, not {fmt!r}")
    return f"voice.{fmt}", data, VOICE_TYPES[fmt]


class WeChatVoiceMedia(WeChatMedia):
    """wechatpy's ``media`` group (``download``, ``upload``, ...) plus the voice-reply calls, with typed errors
    (bot/wechat/errors.py: MediaFormatError, MediaSizeError, APIUnauthorizedError)."""

    def upload_voice(self, data: bytes, fmt: str = "amr") -> UploadedVoice:
        """Temporary voice media (AMR or mp3, ≤ 2 MB, ≤ 60 s; its media_id lives 3 days)."""
        api = "media/upload"
        result = answer_of(api, self._post(api, params={"type": "voice"},
                                         files={"media": voice_file(data, fmt, TEMPORARY_VOICE)}))
        if not result.get("media_id"):
            raise TransportError(api, None, "answer without media_id")
        created = result.get("created_at")
        return UploadedVoice(str(result["media_id"]), int(created) if created else None, permanent=False)

    def add_voice_material(self, data: bytes, fmt: str = "amr") -> UploadedVoice:
        """Permanent voice material (mp3/wma/wav/amr, ≤ 2 MB, ≤ 60 s); delete it with :meth:`delete_material`."""
        api = "material/add_material"
        result = answer_of(api, self._post(api, params={"type": "voice"},
                                         files={"media": voice_file(data, fmt, tuple(VOICE_TYPES))}))
        if not result.get("media_id"):
            raise TransportError(api, None, "answer without media_id")
        return UploadedVoice(str(result["media_id"]), None, permanent=True)

    def delete_material(self, media_id: str) -> None:
        """Delete permanent material (40007 InvalidMediaError: it is not there)."""
        api = "material/del_material"
        answer_of(api, self._post(api, data={"media_id": media_id}))


class VoiceUploader:
    """Uploads voice parts the way this account may: ``upload(data, fmt) -> (media_id, permanent)``.

    Temporary media first; on an APIUnauthorizedError the account is remembered (``voice_media:<appid>`` in the
    store, for ``ttl_s``) as needing permanent material, which is used from then on; ``release(media_id)``
    deletes such material once it was delivered. An account refused both is remembered too, and refused at
    once (the caller answers with text). A store that fails costs the memory, never the upload.
    """

    TEMPORARY, PERMANENT, NONE = "temporary", "permanent", "none"

    def __init__(self, client: Any, store: Store, *, ttl_s: float = 86400.0, appid: str | None = None) -> None:
        self.client, self.store, self.ttl_s = client, store, ttl_s
        self.key = f"voice_media:{appid or client.appid}"

    def capability(self) -> str:
        """What the store remembers for this account: temporary (also: nothing known), permanent or none."""
        try:
            return self.store.get(self.key) or self.TEMPORARY
        except StoreError as exc:
            log.warning("voice media: cannot read %s (%s); trying temporary media", self.key, exc)
            return self.TEMPORARY

    def _remember(self, value: str) -> None:
        try:
            self.store.set(self.key, value, ttl=self.ttl_s)
        except StoreError as exc:
            log.warning("voice media: cannot remember %s=%s (%s)", self.key, value, exc)

    def upload(self, data: bytes, fmt: str = "amr", *, trace: Trace | None = None) -> tuple[str, bool]:
        """The media_id to reply with, and whether it is permanent material (then :meth:`release` it)."""
        started = time.perf_counter()
        try:
            uploaded = self._upload(data, fmt)
        finally:
            if trace is not None:
                add_step(trace, "speech_upload", time.perf_counter() - started)
        return uploaded.media_id, uploaded.permanent

    def _upload(self, data: bytes, fmt: str) -> UploadedVoice:
        media = self.client.media
        capability = self.capability()
        if capability == self.NONE:
            raise APIUnauthorizedError("material/add_material", 48001,
                                       "remembered: this account may add no voice media")
        if capability == self.TEMPORARY:
            try:
                return media.upload_voice(data, fmt)
            except APIUnauthorizedError as exc:
                log.warning("voice media: temporary upload refused (%s); using permanent material for %s "
                            "from now on (remembered %gs)", exc, self.key, self.ttl_s)
                self._remember(self.PERMANENT)
        try:
            return media.add_voice_material(data, fmt)
        except APIUnauthorizedError:
            log.error("voice media: %s may upload neither temporary media nor permanent material; voice "
                      "answers go as text (remembered %gs)", self.key, self.ttl_s)
            self._remember(self.NONE)
            raise

    def release(self, media_id: str) -> bool:
        """Delete permanent material once delivered; True when deleted. Never raises: at worst it stays."""
        try:
            self.client.media.delete_material(media_id)
        except InvalidMediaError:
            log.info("voice media: material %s was already gone", media_id)
            return False
        except WeChatAPIError as exc:
            log.warning("voice media: cannot delete material %s (%s); it counts towards the 1000-item quota "
                        "until deleted", media_id, exc)
            return False
        return True


__all__ = ["WeChatVoiceMedia", "VoiceUploader", "UploadedVoice", "VOICE_TYPES"]
