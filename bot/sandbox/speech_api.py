"""OpenAI-compatible audio endpoints in the sandbox, so ``make run`` speaks and hears offline.

``POST /v1/audio/speech``: each answer text gets its own tone from the same table as the voice clips
(``SandboxState.clip_frequency``, as ``SandboxAccount.register_voice`` does), so voice media made from it decodes back
to the sentence. The speech lasts ``speech_seconds_per_char`` (0.2 s) per character, silent at punctuation and spaces
(the pauses a splitter looks for), in the ``response_format`` asked for: mp3, wav, opus (Ogg), aac (ADTS) or flac.
``speech_latency_s`` delays every answer.

``POST /v1/audio/transcriptions``: a speech service such as OpenAI's, Groq's or a self-hosted whisper server, the
fallback recognizer (and a WeCom app's only one: its voice is understood offline too). It hears audio the way the account's own recognition does (``SandboxAccount.hear``): a clip's
tone is its sentence, anything else (real speech included) is heard as nothing, ``{"text": ""}``. Multipart
``file`` and ``model`` are required; any format PyAV decodes is taken; ``response_format`` json (default) or text;
``transcription_latency_s`` delays every answer; ``transcription_api_key`` ("" = any) is the bearer key it wants.
The call log notes the form fields (model, language, prompt) and the audio (codec, sample rate, channels).

Faults are injected as for every endpoint (endpoint "audio/speech", "audio/transcriptions"). Errors answer as OpenAI
does: a status and ``{"error": {"message", "type"}}``.
"""
from __future__ import annotations

import hmac
import time
from typing import Any

from flask import Response, jsonify, request

from bot.sandbox.account import SandboxAccount
from bot.sandbox.endpoint import Endpoints, note_call
from bot.sandbox.state import SandboxError
from bot.voice.audio import AudioError, decode_pcm
from bot.voice.tones import speech_tone

CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "opus": "audio/ogg", "aac": "audio/aac",
                 "flac": "audio/flac"}
MAX_INPUT_CHARS = 4096  # OpenAI's limit


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    resp = jsonify(error={"message": message, "type": kind})
    resp.status_code = status
    return resp


def register(endpoints: Endpoints, sandbox: SandboxAccount) -> None:
    """Add the endpoints to the sandbox app, faultable and logged like every endpoint (bot/sandbox/endpoint.py)."""
    state = sandbox.state

    @endpoints.api("/v1/audio/speech", ("POST",), needs_token=False)
    def audio_speech() -> Any:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        text, fmt = str(body.get("input") or ""), body.get("response_format") or "mp3"
        for key in ("model", "input", "voice"):
            if not isinstance(body.get(key), str) or not body[key]:
                return _error(400, f"'{key}' is required (a non-empty string)")
        if len(text) > MAX_INPUT_CHARS:
            return _error(400, f"'input' is {len(text)} characters, more than {MAX_INPUT_CHARS}")
        if fmt not in CONTENT_TYPES:
            return _error(400, f"'response_format' must be one of {', '.join(CONTENT_TYPES)}, not {fmt!r}")
        latency = float(state.setting("speech_latency_s"))
        if latency > 0:
            time.sleep(latency)
        try:
            frequency = state.clip_frequency(text)
        except SandboxError as exc:
            return _error(500, f"sandbox: {exc}", "server_error")
        try:
            audio = speech_tone(text, frequency, fmt=fmt,
                                seconds_per_char=float(state.setting("speech_seconds_per_char")))
        except ValueError as exc:
            return _error(400, str(exc))
        return Response(audio, content_type=CONTENT_TYPES[fmt])

    @endpoints.api("/v1/audio/transcriptions", ("POST",), needs_token=False)
    def audio_transcriptions() -> Any:
        form = request.form
        note_call(form={k: form[k] for k in ("model", "language", "prompt", "response_format") if k in form})
        key = str(state.setting("transcription_api_key"))
        sent = request.headers.get("Authorization", "")
        if key and not hmac.compare_digest(sent.encode(), f"Bearer {key}".encode()):
            return _error(401, "Incorrect API key provided")
        upload = request.files.get("file")
        if upload is None or not form.get("model"):
            return _error(400, "'file' (multipart) and 'model' are required")
        fmt = form.get("response_format") or "json"
        if fmt not in ("json", "text"):
            return _error(400, f"'response_format' must be json or text here, not {fmt!r}")
        data = upload.read()
        try:
            pcm, info = decode_pcm(data, sample_rate=16000, max_seconds=600)
        except AudioError as exc:
            return _error(400, f"Invalid file format: {exc}")
        note_call(audio={"codec": info.codec, "sample_rate": info.sample_rate, "channels": info.channels,
                         "bytes": len(data), "filename": upload.filename})
        latency = float(state.setting("transcription_latency_s"))
        if latency > 0:
            time.sleep(latency)
        text, _ = sandbox.hear(pcm)
        return Response(text, content_type="text/plain; charset=utf-8") if fmt == "text" else jsonify(text=text)
