"""WeChat's voice media endpoints, for bots that answer with speech: temporary media and permanent material.

- ``POST /cgi-bin/media/upload?type=voice``, multipart field ``media``: AMR or MP3, ≤ 2 MB, ≤ 60 s. Answers
  ``{"type": "voice", "media_id", "created_at"}`` (Unix seconds); the media_id is served by ``GET
  /cgi-bin/media/get`` for ``media_ttl_s`` (3 days). On an account with ``temporary_media = False`` it answers
  **48001** (api unauthorized): field reports say unverified accounts cannot use it, so a bot must fall back
  to permanent material; the errcode is what WeChat answers for any API the account may not call.
- ``POST /cgi-bin/material/add_material?type=voice``, field ``media``: mp3, wma, wav or amr, ≤ 2 MB, ≤ 60 s, at
  most ``max_materials`` (1000) items. Answers ``{"media_id"}`` (WeChat adds ``url`` for images only).
- ``POST /cgi-bin/material/del_material`` ``{"media_id"}`` → ``{"errcode": 0, "errmsg": "ok"}``.
- ``POST /cgi-bin/material/get_material`` ``{"media_id"}`` → the bytes. Permanent material is not served by
  ``media/get`` (WeChat serves only temporary media there: 40007).

The audio is decoded with PyAV (``bot.voice.audio.decode_pcm``), so the format is what the bytes are, not what
the file name says; its length and, for the sandbox's tones, what it "says" (``bot.voice.tones.detect_tone``
against the clip grid, named by the registered sentence) are listed by ``SandboxAccount.uploads()`` and
``GET /sandbox/uploads``, so tests can check what the user would hear.

Error codes, as WeChat's global return-code table names them:
- 40004 invalid media type: ``type`` other than ``voice`` (the sandbox plays voice only; the errmsg says so).
- 41005 media data missing: no multipart field ``media``. 44001 empty media data: a 0-byte file.
- 40006 invalid file size: more than ``max_media_bytes`` (2 MB = 2,097,152 bytes).
- 40005 invalid file type: not decodable audio, or a format the endpoint does not take (temporary: amr, mp3;
  permanent: amr, mp3, wav, wma).
- 45007 voice playtime out of limit: longer than ``max_media_seconds`` (60 s; 50 ms of slack for the last
  frame: a 60 s AMR clip decodes to 60.02 s).
- 45074 material list size out of limit: ``max_materials`` undeleted permanent items already held (checked
  after the file itself is found valid).
- del_material / get_material: body not JSON → 47001, no ``media_id`` → 41006 (media_id missing), unknown or
  already deleted → 40007 (invalid media_id).
"""
from __future__ import annotations

import time
from typing import Any

from flask import Response, request

from bot.sandbox.account import SandboxAccount
from bot.sandbox.endpoint import Answer, Endpoints, err, error_response, json_body
from bot.sandbox.state import FREQUENCY_GRID, Media, SandboxState
from bot.voice.audio import AudioError, decode_pcm
from bot.voice.tones import detect_tone

# Demuxer name (what PyAV says the bytes are) → file extension and Content-Type served back.
_FORMATS = {"amr": ("amr", "audio/amr"), "mp3": ("mp3", "audio/mpeg"), "wav": ("wav", "audio/x-wav"),
            "asf": ("wma", "audio/x-ms-wma")}
TEMPORARY_FORMATS = ("amr", "mp3")
PERMANENT_FORMATS = ("amr", "mp3", "wav", "asf")
_LAST_FRAME_SLACK_S = 0.05


def voice_upload(state: SandboxState, kind: str, formats: tuple[str, ...]) -> tuple[str, Media] | dict[str, Any]:
    """A new media_id and the voice in this request as :class:`Media` of ``kind``, or WeChat's error for it
    (the WeCom sandbox takes its uploads through here too, with its own ``formats``)."""
    if request.args.get("type") != "voice":
        return err(40004, f"invalid media type {request.args.get('type')!r}: the sandbox plays voice only")
    upload = request.files.get("media")
    if upload is None:
        return err(41005, "media data missing: multipart file field 'media'")
    data = upload.read()
    limit = int(state.setting("max_media_bytes"))
    if not data:
        return err(44001, "empty media data")
    if len(data) > limit:
        return err(40006, f"invalid file size: {len(data)} bytes > {limit}")
    max_s = float(state.setting("max_media_seconds"))
    try:
        pcm, info = decode_pcm(data, sample_rate=16000, max_seconds=max_s + 1)
    except AudioError as exc:
        return err(40005, f"invalid file type: not decodable audio ({exc})")
    if info.container not in formats:
        names = ", ".join(_FORMATS[f][0] for f in formats)
        return err(40005, f"invalid file type: {info.codec} in {info.container}; this endpoint takes {names}")
    if info.duration_s > max_s + _LAST_FRAME_SLACK_S:
        return err(45007, f"voice playtime out of limit: {info.duration_s:.2f} s > {max_s:g} s")
    frequency = detect_tone(pcm, 16000, FREQUENCY_GRID)
    ext, content_type = _FORMATS[info.container]
    media_id = state.new_media_id()
    return media_id, Media(data, content_type, f"{media_id}.{ext}", state.text_for(frequency) or None,
                           frequency, kind=kind, duration_s=info.duration_s)


def register(endpoints: Endpoints, sandbox: SandboxAccount) -> None:
    """Add media/upload and the permanent-material endpoints to the sandbox's app."""
    state = sandbox.state

    @endpoints.api("/cgi-bin/media/upload", ("POST",))
    def media_upload() -> Answer:
        if not state.setting("temporary_media"):
            return err(48001, "api unauthorized: temporary media upload is not allowed for this account "
                              "(sandbox setting temporary_media is false); use material/add_material")
        upload = voice_upload(state, "temporary", TEMPORARY_FORMATS)
        if isinstance(upload, dict):
            return upload
        media_id = state.put_media(*upload)
        return {"type": "voice", "media_id": media_id, "created_at": int(time.time())}

    @endpoints.api("/cgi-bin/material/add_material", ("POST",))
    def add_material() -> Answer:
        upload = voice_upload(state, "permanent", PERMANENT_FORMATS)
        if isinstance(upload, dict):
            return upload
        with state.lock:  # the count and the insert as one step: two uploads never both take the last slot
            limit = int(state.setting("max_materials"))
            if state.material_count() >= limit:
                return err(45074, f"material list size out of limit: {limit} items; delete the useless material")
            return {"media_id": state.put_media(*upload)}

    def named_material() -> tuple[str, Media | None] | dict[str, Any]:
        body = json_body()
        if body is None:
            return err(47001, "data format error")
        media_id = body.get("media_id")
        if not media_id or not isinstance(media_id, str):
            return err(41006, "media_id missing")
        return media_id, state.get_material(media_id)

    @endpoints.api("/cgi-bin/material/del_material", ("POST",))
    def del_material() -> Answer:
        named = named_material()
        if isinstance(named, dict):
            return named
        media_id, _ = named
        return err(0, "ok") if state.delete_material(media_id) else err(40007, "invalid media_id")

    @endpoints.api("/cgi-bin/material/get_material", ("POST",))
    def get_material() -> Answer:
        named = named_material()
        if isinstance(named, dict):
            return named
        media_id, media = named
        if media is None:
            return error_response(40007, "invalid media_id")
        resp = Response(media.data, content_type=media.content_type)
        resp.headers["Content-Disposition"] = f'attachment; filename="{media.filename}"'
        return resp
