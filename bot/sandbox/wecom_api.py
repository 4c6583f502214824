"""The WeCom (企业微信) self-built app the sandbox plays under ``/wecom`` (point the account's ``api_base_url`` at
``http://HOST:PORT/wecom``): its token, the user's voice, voice uploads and ``message/send``, as WeCom answers.

- ``GET /wecom/cgi-bin/gettoken?corpid&corpsecret``: 41002 corpid missing, 41004 corpsecret missing, 40013
  invalid corpid, 40001 invalid secret (WeCom's meaning of 40001); the token lives ``token_expires_in`` and a
  fetch does not revoke the previous one. Every other endpoint wants it: 41001 missing, 40014 invalid (an
  Official Account's token included), 42001 expired.
- ``GET /wecom/cgi-bin/media/get``: the media the sandbox holds (user voice registered with
  ``POST /sandbox/voices``), JSON errors 41006 / 40007.
- ``POST /wecom/cgi-bin/media/upload?type=voice``: AMR only, ≤ 2 MB, ≤ 60 s (errors as the Official Account's
  media API: 40004, 40005, 40006, 44001, 45007); answers ``created_at`` as a string, as WeCom does.
- ``POST /wecom/cgi-bin/message/send`` ``{"touser", "msgtype", "agentid", <msgtype>: {...}}``: 40056 an agentid
  that is not the app's; 81013 no valid recipient (empty ``touser``, or every user outside ``wecom_users``);
  40008 unknown ``msgtype``; 44004 empty text; 40007 a media_id the sandbox does not hold; 45009 past
  ``wecom_per_user_per_minute`` (30) messages to one user within 60 s (WeCom's documented limit; its docs say
  the excess is dropped, the errcode a live app gets is not documented: 45009 is WeCom's "api freq out of
  limit"). A text over ``max_text_bytes`` (2048) is *truncated*, as WeCom's docs say it does: the recorded
  message says ``"truncated": true`` so tests see an answer that was not split. Accepted messages are recorded
  with the customer-service ones (``/sandbox/messages``: they carry ``agentid``); users outside
  ``wecom_users`` come back in ``invaliduser``. No 48-hour window and no quota per user message.
"""
from __future__ import annotations

import itertools
import time
from typing import Any

from flask import Response, request

from bot.sandbox.account import SandboxAccount
from bot.sandbox.endpoint import Answer, Endpoints, err, error_response, json_body
from bot.sandbox.media_api import voice_upload

PREFIX = "/wecom/cgi-bin"
MSGTYPES = ("text", "image", "voice", "video", "file", "textcard", "news", "mpnews", "markdown")


def register(endpoints: Endpoints, sandbox: SandboxAccount) -> None:
    """Add the WeCom endpoints to the sandbox's app."""
    state = sandbox.state
    ids = itertools.count(1)

    def token_problem() -> dict[str, Any] | None:
        token = request.args.get("access_token")
        if not token:
            return err(41001, "access_token missing")
        problem = state.check_token(token)
        with state.lock:
            tok = state.tokens.get(token)
        if problem is None and tok is not None and tok.kind != "wecom":
            problem = (40001, "not a WeCom token")
        if problem is None:
            return None
        return err(42001, "access_token expired") if problem[0] == 42001 else err(40014, "invalid access_token")

    def api(path: str, methods: tuple[str, ...], **kw: Any) -> Any:
        return endpoints.api(f"{PREFIX}/{path}", methods, needs_token=False, **kw)

    @api("gettoken", ("GET",))
    def wecom_gettoken() -> Answer:
        corpid, secret = request.args.get("corpid"), request.args.get("corpsecret")
        if not corpid:
            return err(41002, "corpid missing")
        if not secret:
            return err(41004, "corpsecret missing")
        if corpid != state.setting("wecom_corp_id"):
            return err(40013, "invalid corpid")
        if secret != state.setting("wecom_secret"):
            return err(40001, "invalid secret")
        token, expires_in = state.issue_wecom_token()
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in}

    @api("media/get", ("GET",))
    def wecom_media_get() -> Answer:
        problem = token_problem()
        if problem:
            return problem
        media_id = request.args.get("media_id")
        media = state.get_media(media_id) if media_id else None
        if media is None:
            return error_response(41006, "media_id missing") if not media_id else error_response(40007, "invalid media_id")
        resp = Response(media.data, content_type=media.content_type)
        resp.headers["Content-Disposition"] = f'attachment; filename="{media.filename}"'
        return resp

    @api("media/upload", ("POST",))
    def wecom_media_upload() -> Answer:
        problem = token_problem()
        if problem:
            return problem
        upload = voice_upload(state, "temporary", ("amr",))
        if isinstance(upload, dict):
            return upload
        media_id = state.put_media(*upload)
        return {"errcode": 0, "errmsg": "", "type": "voice", "media_id": media_id, "created_at": str(int(time.time()))}

    @api("message/send", ("POST",))
    def wecom_message_send() -> Answer:
        problem = token_problem()
        if problem:
            return problem
        body = json_body()
        if body is None:
            return err(47001, "data format error")
        if body.get("agentid") != state.setting("wecom_agent_id"):
            return err(40056, f"invalid agentid {body.get('agentid')!r}")
        kind = body.get("msgtype")
        if kind not in MSGTYPES:
            return err(40008, f"invalid message type {kind!r}")
        users = [u for u in str(body.get("touser") or "").split("|") if u]
        visible = state.setting("wecom_users")
        invalid = [u for u in users if visible and u not in visible]
        if not users or len(invalid) == len(users):
            return err(81013, "user & party & tag all invalid")
        given = body.get(kind)
        content: dict[str, Any] = given if isinstance(given, dict) else {}
        record = {**body, kind: dict(content)}
        if kind == "text":
            text = content.get("content")
            if not text or not isinstance(text, str):
                return err(44004, "empty content")
            data, limit = text.encode("utf-8"), int(state.setting("max_text_bytes"))
            if len(data) > limit:  # WeCom truncates a longer text (its docs): record what the user would read
                record["text"] = {"content": data[:limit].decode("utf-8", "ignore")}
                record["truncated"] = True
        elif kind in ("image", "voice", "video", "file"):
            media_id = content.get("media_id")
            if not isinstance(media_id, str) or state.find_media(media_id) is None:
                return err(40007, f"invalid media_id {media_id!r}")
        limit_per_minute = int(state.setting("wecom_per_user_per_minute"))
        now = state.clock()
        with state.lock:
            recent = [c for c in state.call_log if c["path"] == request.path and c["errcode"] == 0
                      and now - c["t"] < 60 and set(users) & set(str((c["json"] or {}).get("touser")).split("|"))]
            if len(recent) >= limit_per_minute:
                return err(45009, f"api freq out of limit: {limit_per_minute} messages a minute to one user")
            state.record_message(record)
        return {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "invalidparty": "",
                "invalidtag": "", "msgid": f"sbxmsg{next(ids)}"}
