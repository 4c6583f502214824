"""``POST /v1/audio/transcriptions``: an OpenAI-compatible speech-to-text endpoint for the ``openai`` recognizer,
so that a bot whose account has no WeChat recognition (a WeCom app) understands voice offline too.

It answers the sentence whose tone the audio carries (the sandbox's clip table), like the recognition API
(bot/sandbox/app.py): a transcode that breaks the audio gets a wrong or empty text. Multipart fields ``file``
and ``model`` are required (400 otherwise, as OpenAI answers); audio that does not decode is a 400 too.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

from bot.sandbox.account import SandboxAccount
from bot.sandbox.state import FREQUENCY_GRID
from bot.voice.audio import AudioError, decode_pcm
from bot.voice.tones import detect_tone


def register(app: Flask, sandbox: SandboxAccount) -> None:
    """Add the transcription endpoint to the sandbox's app."""

    @app.post("/v1/audio/transcriptions")
    def transcriptions() -> Any:
        upload = request.files.get("file")
        if upload is None or not request.form.get("model"):
            return jsonify(error={"message": "file and model are required", "type": "invalid_request_error"}), 400
        try:
            pcm, _ = decode_pcm(upload.read(), sample_rate=16000, max_seconds=60)
        except AudioError as exc:
            return jsonify(error={"message": f"Invalid file format: {exc}", "type": "invalid_request_error"}), 400
        return jsonify(text=sandbox.state.text_for(detect_tone(pcm, 16000, FREQUENCY_GRID)))
