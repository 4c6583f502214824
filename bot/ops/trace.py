"""The per-message trace and its one structured ``bot.message`` line (and the metrics it counts).

Why one line, emitted by the delivery layer: a message's steps run in the job (maybe another process, an RQ
worker), but only the delivery layer knows how the answer left (passive, on a retry, through customer service,
or not at all). So the job records its steps and outcome into a :class:`Trace` (stored in the delivery record
while the answer waits), and whoever wins the final transition of that record emits the line, once: exactly-once delivery
gives exactly-one line for free.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from bot.ops.metrics import message_done

if TYPE_CHECKING:
    from bot.config import Config

log = logging.getLogger("bot.message")

QUEUED = 0.1  # a wait for a thread this long (s) is on the line as queued_ms (shorter: reading the request)
PATHS = ("passive", "retry", "customer_service", "pickup", "undeliverable", "expired")


@dataclass
class Trace:
    """One message's steps and outcome, carried from the push through the job (maybe another process: it is
    stored in the delivery record as JSON) to the one line delivery emits. Fields in the order the line shows
    them; the optional ones appear only when set."""

    msg_id: str
    openid: str | None = None
    type: str = "unknown"
    steps: dict[str, float] = field(default_factory=dict)  # step -> ms (a step that ran twice adds up)
    recognizer: str | None = None  # which recognizer produced the transcript ("text" for typed text)
    # each recognizer's try in order: {"name", "outcome" (ok, or why it failed), "ms"}
    recognizers: list[dict[str, Any]] | None = None
    outcome: str = "unfinished"  # answered, not_understood, handler_error, no_answer
    recognition_error: str | None = None  # why each recognizer that failed did: "wechat:empty_final,…"
    synthesizer: str | None = None
    synthesis_error: str | None = None
    speech_s: float | None = None
    speech_parts: int | None = None
    queued_ms: float | None = None  # how long the first try waited before a thread took it (from 100 ms)
    withheld: bool | None = None  # a try had the answer past its budget and left it to another way
    account: str | None = None  # the account the message came to (shown first), with several accounts

    ALWAYS: ClassVar[tuple[str, ...]] = ("msg_id", "openid", "type", "steps", "recognizer", "outcome")

    def add_step(self, name: str, seconds: float) -> None:
        """Record a step's duration in ms (a step that ran twice, e.g. two downloads, adds up)."""
        self.steps[name] = round(self.steps.get(name, 0.0) + seconds * 1000, 1)

    def fields(self) -> dict[str, Any]:
        """The line's fields: the first six always, the others when set."""
        fields = {"account": self.account} if self.account else {}
        always = self.ALWAYS
        for k, v in vars(self).items():  # a plain loop: every message's line is built here
            if v is not None and k != "account" or k in always:
                fields[k] = v
        return fields

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None and v != {}}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, msg_id: str = "?") -> Trace:
        if not data:
            return cls(msg_id)
        known = {k: v for k, v in data.items() if k in _FIELDS}  # a record written by another version
        return cls(**{"msg_id": msg_id, **known})


_FIELDS = frozenset(f.name for f in dataclasses.fields(Trace))


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
    waited = max(getattr(inbound, "waited_s", 0.0), getattr(inbound, "stamp_late_s", 0.0))
    return Trace(message_id(config, inbound), hash_openid(config, getattr(message, "source", None)), inbound.msg_type,
                 account=config.account.name or None, queued_ms=round(waited * 1000) if waited >= QUEUED else None)


def add_recognition(trace: Trace, transcript: Any) -> None:
    """Record a voice message's transcript (a ``bot.voice.recognizers.Transcript``): its steps, the recognizer
    that produced it (``recognizer``), each recognizer's try in order with its outcome and ms (``recognizers``:
    ``ok`` or why it failed — ``empty_final``, ``timeout``, ``unavailable``…), and, when none produced text, the
    reasons (``recognition_error``)."""
    for step, seconds in getattr(transcript, "steps", ()):
        trace.add_step(step, seconds)
    trace.recognizer = getattr(transcript, "source", None)
    tries = getattr(transcript, "tries", ())
    if tries:
        trace.recognizers = [{"name": name, "outcome": outcome, "ms": round(seconds * 1000, 1)}
                             for name, outcome, seconds in tries]
    if getattr(transcript, "error", None):
        trace.recognition_error = transcript.error


def emit(trace: Trace, path: str, *, tries: int | None = None, sent: bool | None = None,
         reason: str | None = None, parts: int | None = None, waited_s: float | None = None) -> None:
    """Log the message's one line and count it in the metrics; called once, where delivery is decided.

    ``parts``: how many messages a split answer took; ``waited_s``: how long a picked-up answer was kept."""
    fields = trace.fields()
    fields["path"] = path
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
