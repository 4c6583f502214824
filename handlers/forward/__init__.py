"""Forwarding: hand each text (or transcribed voice) message to your own HTTP service and reply with its answer.

Enabled by listing ``"handlers.forward:router"`` in ``[handlers] routers`` (its place in the list is its
priority); ``[forward] url`` and ``secret`` are then required at start-up. The protocol (README, "Forwarding
to your own service")::

    POST <url>   Content-Type: application/json
    X-Voicebot-Timestamp: <unix seconds>
    X-Voicebot-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>
    {"msg_id", "openid", "text", "source", "lang", "session"}

    200 {"reply": "...", "session": {...}}      session is optional and replaces the user's session

The call gets ``min([forward] timeout_s, what is left of the reply budget)``. Any failure (timeout, not
200, not JSON, no ``reply``) is logged with the message id and the reason, and the next handler answers.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import urllib3

from bot import Context, Router
from bot.core.normalize import guess_lang

log = logging.getLogger("handlers.forward")

router = Router("forward")

SIGNATURE_HEADER = "X-Voicebot-Signature"
TIMESTAMP_HEADER = "X-Voicebot-Timestamp"
MAX_ANSWER_BYTES = 64 * 1024
MIN_TIMEOUT_S = 0.05  # less than this left of the budget: do not even try

_http = urllib3.PoolManager(retries=False)  # one connection pool per process, shared by the worker threads


class ForwardError(Exception):
    """Why a forward produced no reply (the log line's ``reason``)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Voicebot-Signature`` value: the timestamp is signed too, so an old request cannot be replayed."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@router.text
@router.voice
def forward(ctx: Context) -> str | None:
    if not ctx.text:
        return None
    started = time.monotonic()
    try:
        answer = call(ctx)
    except ForwardError as exc:
        log.warning("forward failed msg_id=%s reason=%s ms=%.0f", ctx.msg_id, exc, (time.monotonic() - started) * 1000)
        return None
    if isinstance(answer.get("session"), dict):
        ctx.session = dict(answer["session"])
    log.info("forward msg_id=%s answered ms=%.0f", ctx.msg_id, (time.monotonic() - started) * 1000)
    return answer["reply"]


def call(ctx: Context) -> dict[str, Any]:
    """POST the message to ``[forward] url``; the checked JSON answer, or :class:`ForwardError`."""
    cfg = getattr(ctx.config, "forward", None)
    if cfg is None or not cfg.url:
        raise ForwardError("no [forward] url configured")
    timeout = min(cfg.timeout_s, ctx.time_left())
    if timeout < MIN_TIMEOUT_S:
        raise ForwardError(f"no time left in the reply budget ({timeout:.2f}s)")
    text = ctx.original_text or ctx.text or ""
    body = json.dumps({"msg_id": ctx.msg_id, "openid": ctx.openid, "text": text, "source": ctx.transcript_source,
                       "lang": guess_lang(text), "session": ctx.session}, ensure_ascii=False).encode("utf-8")
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json; charset=utf-8", TIMESTAMP_HEADER: timestamp,
               SIGNATURE_HEADER: sign(cfg.secret, timestamp, body)}
    return _check(_post(cfg.url, body, headers, timeout))


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> bytes:
    """The answer body; ``timeout`` bounds the whole exchange (connect, wait, and reading the body)."""
    deadline = time.monotonic() + timeout
    try:
        response = _http.request("POST", url, body=body, headers=headers, preload_content=False,
                                 timeout=urllib3.Timeout(total=timeout), redirect=False)
        complete = False
        try:
            if response.status != 200:
                raise ForwardError(f"HTTP {response.status}")
            data = b""
            for chunk in response.stream(8192):
                data += chunk
                if len(data) > MAX_ANSWER_BYTES:
                    raise ForwardError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise ForwardError(f"timeout after {timeout:.2f}s")
            complete = True
            return data
        finally:
            if complete:
                response.release_conn()
            else:  # an answer left unread: drop the connection rather than reuse it
                response.close()
    except urllib3.exceptions.NewConnectionError as exc:  # before TimeoutError: urllib3 makes it a subclass
        raise ForwardError(f"cannot connect: {exc.__context__ or exc}") from None
    except (urllib3.exceptions.TimeoutError, TimeoutError):
        raise ForwardError(f"timeout after {timeout:.2f}s") from None
    except urllib3.exceptions.HTTPError as exc:
        raise ForwardError(f"{type(exc).__name__}: {exc}") from None


def _check(raw: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ForwardError("answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ForwardError("answer is not a JSON object")
    reply = answer.get("reply")
    if not isinstance(reply, str) or not reply.strip():
        raise ForwardError("answer has no reply")
    if answer.get("session") is not None and not isinstance(answer["session"], dict):
        raise ForwardError("answer's session is not a JSON object")
    return answer
