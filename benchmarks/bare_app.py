"""The baseline for ``benchmarks/webhook.py``: a bare Flask + wechatpy handler doing the least possible.

verify (``check_signature``; in safe mode ``WeChatCrypto.decrypt_message``, which checks ``msg_signature``)
→ ``parse_message`` → ``TextReply(...).render()`` echoing the content → encrypt in safe mode. No replay
window, no size limit, no routing, no per-message logging. Served by gunicorn as ``bare_app:app`` with the
secrets in ``BARE_TOKEN``, ``BARE_APPID``, ``BARE_AES_KEY`` and the log level in ``BARE_LOG_LEVEL``.
"""
from __future__ import annotations

import logging
import os

from flask import Flask, Response, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

TOKEN = os.environ.get("BARE_TOKEN", "sandbox-token")
APPID = os.environ.get("BARE_APPID", "wxsandbox")
AES_KEY = os.environ.get("BARE_AES_KEY", "")
PATH = os.environ.get("BARE_PATH", "/wechat")

# Same log set-up as the bot's (bot.ops.logs.setup_logging), so both servers pay the same for it.
logging.basicConfig(level=getattr(logging, os.environ.get("BARE_LOG_LEVEL", "WARNING").upper(), logging.WARNING),
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")

crypto = WeChatCrypto(TOKEN, AES_KEY, APPID) if AES_KEY else None
app = Flask("bare_wechat")


@app.post(PATH)
def callback() -> Response:
    args = request.args
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    encrypted = args.get("encrypt_type") == "aes"
    try:
        if encrypted:
            xml = crypto.decrypt_message(request.get_data(), args.get("msg_signature", ""), timestamp, nonce)
        else:
            check_signature(TOKEN, args.get("signature", ""), timestamp, nonce)
            xml = request.get_data()
    except InvalidSignatureException:
        return Response("bad signature", status=403)
    message = parse_message(xml)
    reply = TextReply(message=message, content=message.content).render()
    if encrypted:
        reply = crypto.encrypt_message(reply, nonce, timestamp)
    return Response(reply, content_type="application/xml; charset=utf-8")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
