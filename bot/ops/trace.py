"""The per-message trace and its one structured ``bot.message`` line (and the metrics it counts).

Why one line, emitted by the delivery layer: a message's steps run in the job (maybe another process, an RQ
worker), but only the delivery layer knows how the answer left (passive, on a retry, through customer service,
or not at all). So the job records its steps and outcome into a trace (a plain dict stored in the delivery
record), and whoever wins the final transition of that record emits the line, once: exactly-once delivery
gives exactly-one line for free.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, Protocol

from bot.ops.metrics import message_done

if TYPE_CHECKING:
    from bot.config import Config

log = logging.getLogger("bot.message")

Trace = dict[str, Any]
PATHS = ("passive", "retry", "customer_service", "pickup", "undeliverable", "expired")


class Traced(Protocol):
    """What a trace starts from: an inbound message (``bot.core.envelope.Inbound``)."""

    @property
    def msg_id(self) -> str: ...
    @property
    def msg_type(self) -> str: ...  # WeChat's MsgType (wechatpy says "unknown" for types it does not know)
    @property
    def message(self) -> Any: ...


def hash_openid(config: Config, openid: str | None) -> str | None:
    """sha256(salt + openid), first 12 hex: the same user is recognizable across lines, not identifiable.

    The salt is ``[logging] openid_salt`` or, by default, derived from the AppID and AppSecret, so two
    deployments never share hashes and nobody without the secret can test a known openid against a log."""
    if not openid or not config.logging.hash_openid:
        return openid
    salt = config.logging.openid_salt or _default_salt(config.wechat.appid, config.wechat.appsecret)
    return hashlib.sha256(f"{salt}{openid}".encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=16)
def _default_salt(appid: str, appsecret: str) -> str:
    return hashlib.sha256(f"wvb-openid:{appid}:{appsecret}".encode()).hexdigest()


def message_id(config: Config, inbound: Traced) -> str:
    """The id logs (and handlers, as ``ctx.msg_id``) show for a message: its ``MsgId``. Events have none, and
    their dedupe key is ``FromUserName:CreateTime``: the raw openid, so it is shown as
    ``<hash_openid(openid)>:<CreateTime>``, the same hash as the line's ``openid`` field."""
    data = getattr(inbound.message, "_data", None) or {}
    if data.get("MsgId") or not config.logging.hash_openid:
        return str(inbound.msg_id)
    return f"{hash_openid(config, str(data.get('FromUserName', '')))}:{data.get('CreateTime', '')}"


def new_trace(config: Config, inbound: Traced) -> Trace:
    """The trace of a message before (or without) its job: what the push says."""
    message = inbound.message
    trace: Trace = {"account": config.account.name} if config.account.name else {}
    trace.update({"msg_id": message_id(config, inbound), "openid": hash_openid(config, getattr(message, "source", None)),
                  "type": inbound.msg_type, "steps": {}, "recognizer": None, "outcome": "unfinished"})
    return trace


def add_step(trace: Trace, name: str, seconds: float) -> None:
    """Record a step's duration in ms (a step that ran twice, e.g. two downloads, adds up)."""
    steps = trace.setdefault("steps", {})
    steps[name] = round(steps.get(name, 0.0) + seconds * 1000, 1)


def add_recognition(trace: Trace, transcript: Any) -> None:
    """Record a voice message's transcript (a ``bot.voice.recognizers.Transcript``): its steps, the recognizer
    that produced it (``recognizer``), each recognizer's try in order with its outcome and ms (``recognizers``:
    ``ok`` or why it failed — ``empty_final``, ``timeout``, ``unavailable``…), and, when none produced text, the
    reasons (``recognition_error``)."""
    for step, seconds in getattr(transcript, "steps", ()):
        add_step(trace, step, seconds)
    trace["recognizer"] = getattr(transcript, "source", None)
    tries = getattr(transcript, "tries", ())
    if tries:
        trace["recognizers"] = [{"name": name, "outcome": outcome, "ms": round(seconds * 1000, 1)}
                                for name, outcome, seconds in tries]
    if getattr(transcript, "error", None):
        trace["recognition_error"] = transcript.error


def emit(trace: Trace, path: str, *, tries: int | None = None, sent: bool | None = None,
         reason: str | None = None, parts: int | None = None, waited_s: float | None = None) -> None:
    """Log the message's one line and count it in the metrics; called once, where delivery is decided.

    ``parts``: how many messages a split answer took; ``waited_s``: how long a picked-up answer was kept."""
    fields: dict[str, Any] = {**trace, "path": path}
    if tries is not None:
        fields["tries"] = tries
    if sent is not None:
        fields["sent"] = sent
    if parts is not None and parts > 1:
        fields["parts"] = parts
    if waited_s is not None:
        fields["waited_s"] = round(waited_s, 1)
    if reason:
        fields["reason"] = reason
    level = logging.ERROR if path in ("undeliverable", "expired") or sent is False else logging.INFO
    if log.isEnabledFor(level):  # at WARNING the INFO line is not even formatted
        _log(level, _text(fields), fields)
    message_done(fields)


def _log(level: int, text: str, fields: dict[str, Any]) -> None:
    """``log.log(level, "message %s", text, extra={"fields": fields})``: the same record through the same
    ``log.handle``, without the stack walk that finds the caller (it is ``emit``, one frame up)."""
    where = ("(unknown file)", 0, "(unknown function)")
    if logging._srcfile:  # type: ignore[attr-defined]  # logging's own switch: None looks no caller up
        caller = sys._getframe(1)
        where = (caller.f_code.co_filename, caller.f_lineno, caller.f_code.co_name)
    log.handle(log.makeRecord(log.name, level, where[0], where[1], "message %s", (text,), None, where[2],
                              {"fields": fields, "fields_in_message": True}))


def _text(fields: dict[str, Any]) -> str:
    """``key=value`` pairs; steps as ``steps=download:12.0,poll:310.5``, recognizers' tries as
    ``recognizers=wechat:empty_final:312.4,openai:ok:1003``."""
    parts = []
    for key, value in fields.items():
        if key == "steps":
            value = ",".join(f"{k}:{v:g}" for k, v in value.items()) or "-"
        elif key == "recognizers" and isinstance(value, list):
            value = ",".join(f"{t.get('name')}:{t.get('outcome')}:{t.get('ms', 0):g}" for t in value) or "-"
        elif value is None:
            value = "-"
        elif isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, str) and (not value or " " in value or '"' in value):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={value}")
    return " ".join(parts)
