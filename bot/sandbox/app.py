"""The Flask app: WeChat's endpoints as WeChat answers them, plus ``/sandbox/*`` control endpoints.

Error codes WeChat documents are used as documented. Where WeChat documents nothing, the sandbox picks
(and the bot's client relies on nothing more specific than the class of error):

- addvoicetorecofortext: ``format`` other than mp3, or audio that is not mp3 / 16 kHz / mono → 40005
  (invalid file type); more than ``max_voice_bytes`` (1,000,000) → 40010 (invalid voice size); no
  ``media`` file field → 41005 (media data missing); an empty file → 44001; missing ``voice_id`` or an
  unknown ``lang`` → 40035 (invalid args); a ``voice_id`` already used → 47001.
- queryrecoresultfortext: unknown ``voice_id``, or asked after ``window_s`` → 46001 (the errmsg says which);
  missing ``voice_id`` → 40035. Answers carry ``is_end`` as live accounts' do (``SandboxState.query_voice``).
- translatecontent: empty body → 44004, more than 600 bytes → 45002, unknown lfrom/lto → 40035.
- message/custom/send and message/custom/typing: see bot/sandbox/customer_service.py; media/upload and the
  permanent-material endpoints: bot/sandbox/media_api.py; the WeCom app under /wecom: bot/sandbox/wecom_api.py.
- media/get errors come back as JSON with ``Content-Type: text/plain`` (what WeChat sends there, and what
  clients such as WxJava test for); every other answer is ``application/json; encoding=utf-8``.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from bot.sandbox import chat_api, customer_service, inspection, media_api, speech_api, wecom_api
from bot.sandbox.account import SandboxAccount
from bot.sandbox.endpoint import Answer, Endpoints, control, control_body, err, error_response, json_body
from bot.sandbox.state import VoiceUpload
from bot.voice.audio import AudioError, decode_pcm

LANGS = ("zh_CN", "en_US")


def create_app(sandbox: SandboxAccount) -> Flask:
    """Build the app around ``sandbox`` (its state, and its helpers for the control endpoints).

    Endpoint groups live in their own modules and register here: customer service (send, typing), media
    (upload, permanent material), and the inspect endpoints under ``/sandbox/``.
    """
    state = sandbox.state
    app = Flask("bot.sandbox")
    endpoints = Endpoints(app, state)
    api = endpoints.api

    def credentials(grant_type: Any, appid: Any, secret: Any) -> dict[str, Any] | None:
        if grant_type != "client_credential":
            return err(40002, "invalid grant_type")
        if not appid:
            return err(41002, "appid missing")
        if not secret:
            return err(41004, "appsecret missing")
        if appid != state.setting("appid"):
            return err(40013, "invalid appid")
        if secret != state.setting("appsecret"):
            return err(40125, "invalid appsecret")
        return None

    @api("/cgi-bin/token", ("GET",), needs_token=False)
    def token() -> Answer:
        a = request.args
        problem = credentials(a.get("grant_type"), a.get("appid"), a.get("secret"))
        if problem:
            return problem
        value, expires_in = state.issue_classic_token()
        return {"access_token": value, "expires_in": expires_in}

    @api("/cgi-bin/stable_token", ("POST",), needs_token=False)
    def stable_token() -> Answer:
        body = json_body()
        if body is None:
            return err(47001, "data format error: body must be JSON")
        problem = credentials(body.get("grant_type"), body.get("appid"), body.get("secret"))
        if problem:
            return problem
        force = body.get("force_refresh") in (True, "true", 1, "1")
        value, expires_in = state.issue_stable_token(force)
        return {"access_token": value, "expires_in": expires_in}

    @api("/cgi-bin/media/get", ("GET",))
    def media_get() -> Answer:
        media_id = request.args.get("media_id")
        media = state.get_media(media_id) if media_id else None
        if media is None:
            answer = err(41006, "media_id missing") if not media_id else err(40007, "invalid media_id")
            return error_response(answer["errcode"], answer["errmsg"], content_type="text/plain")
        resp = Response(media.data, content_type=media.content_type)
        resp.headers["Content-Disposition"] = f'attachment; filename="{media.filename}"'
        return resp

    @api("/cgi-bin/media/voice/addvoicetorecofortext", ("POST",))
    def addvoicetorecofortext() -> Answer:
        a = request.args
        voice_id, fmt, lang = a.get("voice_id"), a.get("format"), a.get("lang", "zh_CN")
        if not voice_id:
            return err(40035, "invalid args: voice_id missing")
        if fmt != "mp3":
            return err(40005, f"invalid file type: format must be mp3, not {fmt!r}")
        if lang not in LANGS:
            return err(40035, f"invalid args: lang must be one of {LANGS}")
        upload = request.files.get("media")
        if upload is None:
            return err(41005, "media data missing: multipart file field 'media'")
        data = upload.read()
        limit = int(state.setting("max_voice_bytes"))
        if not data:
            return err(44001, "empty media data")
        if len(data) > limit:
            return err(40010, f"invalid voice size: {len(data)} bytes > {limit}")
        if state.voice_known(voice_id):
            return err(47001, f"voice_id {voice_id!r} already used")
        try:
            pcm, info = decode_pcm(data, sample_rate=16000, max_seconds=60)
        except AudioError as exc:
            return err(40005, f"invalid file type: not decodable audio ({exc})")
        if info.codec != "mp3":
            return err(40005, f"invalid file type: audio is {info.codec} in {info.container}, not mp3")
        if info.sample_rate != 16000:
            return err(40005, f"invalid file type: {info.sample_rate} Hz, must be 16000 Hz")
        if info.channels != 1:
            return err(40005, f"invalid file type: {info.channels} channels, must be mono")
        text, freq = sandbox.hear(pcm)
        if not state.add_voice(voice_id, VoiceUpload(state.clock(), text, lang, freq)):
            return err(47001, f"voice_id {voice_id!r} already used")
        return err(0, "ok")

    @api("/cgi-bin/media/voice/queryrecoresultfortext", ("POST",))
    def queryrecoresultfortext() -> Answer:
        voice_id = request.args.get("voice_id")
        if not voice_id:
            return err(40035, "invalid args: voice_id missing")
        answer, reason = state.query_voice(voice_id)
        return err(46001, reason) if answer is None else answer

    @api("/cgi-bin/media/voice/translatecontent", ("POST",))
    def translatecontent() -> Answer:
        lfrom, lto = request.args.get("lfrom"), request.args.get("lto")
        if lfrom not in LANGS or lto not in LANGS:
            return err(40035, f"invalid args: lfrom and lto must be in {LANGS}")
        raw = request.get_data()
        if not raw:
            return err(44004, "empty content")
        if len(raw) > 600:
            return err(45002, f"content size out of limit: {len(raw)} bytes > 600")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return err(40035, "invalid args: body must be UTF-8 text")
        return {"from_content": text, "to_content": sandbox.translate(text, lfrom, lto)}

    customer_service.register(endpoints, sandbox)
    media_api.register(endpoints, sandbox)
    speech_api.register(endpoints, sandbox)
    chat_api.register(endpoints, sandbox)
    wecom_api.register(endpoints, sandbox)
    register_control(app, sandbox)
    inspection.register(app, sandbox)
    return app


def register_control(app: Flask, sandbox: SandboxAccount) -> None:
    """``/sandbox/*``: what tests and the CLI use to set the scene and read what happened."""

    @app.get("/sandbox/")
    @control
    def info() -> Any:
        return {"url": request.host_url.rstrip("/"), "settings": sandbox.state.settings, "clips": sandbox.clips(),
                **sandbox.overview()}

    @app.route("/sandbox/voices", methods=["GET", "POST"])
    @control
    def voices() -> Any:
        if request.method == "GET":
            return sandbox.clips()
        b = control_body()
        return sandbox.register_voice(str(b["text"]), duration_s=float(b.get("duration_s") or 2.0),
                                      fmt=b.get("format") or "amr", with_16k=bool(b.get("with_16k")))

    @app.post("/sandbox/media")
    @control
    def media() -> Any:
        a = request.args
        freq = a.get("frequency")
        filename = a.get("filename") or "voice.amr"
        kwargs = {"content_type": a["content_type"]} if a.get("content_type") else {}
        media_id = sandbox.add_media(request.get_data(), filename=filename, text=a.get("text"),
                                     frequency=float(freq) if freq else None, **kwargs)
        return {"media_id": media_id}

    @app.post("/sandbox/faults")
    @control
    def faults() -> Any:
        b = control_body()
        sandbox.inject_fault(str(b["endpoint"]), int(b["errcode"]), int(b.get("times", 1)),
                             http_status=b.get("http_status"), body=b.get("body"))
        return {"ok": True}

    @app.post("/sandbox/config")
    @control
    def config() -> Any:
        sandbox.configure(**control_body())
        return sandbox.state.settings

    @app.get("/sandbox/calls")
    @control
    def calls() -> Any:
        return sandbox.calls()

    @app.get("/sandbox/messages")
    @control
    def messages() -> Any:
        return sandbox.custom_messages()

    @app.post("/sandbox/reset")
    @control
    def reset() -> Any:
        data = request.get_json(force=True, silent=True)  # optional: {"settings": true}
        sandbox.reset(settings=isinstance(data, dict) and data.get("settings") is True)
        return {"ok": True}

    @app.post("/sandbox/translations")
    @control
    def translations() -> Any:
        for src, dst in control_body().items():
            sandbox.register_translation(str(src), str(dst))
        return {"ok": True}
