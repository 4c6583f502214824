"""Observability for logs: one structured ``bot.message`` line per message, JSON output, secret redaction.

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
import re
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, TextIO

from .metrics import message_done

if TYPE_CHECKING:
    from .config import Config
    from .envelope import Inbound

log = logging.getLogger("bot.message")

Trace = dict[str, Any]
PATHS = ("passive", "retry", "customer_service", "undeliverable")

# ``access_token=...`` / ``secret=...`` in URLs, and the same keys in JSON or repr'd dicts.
SECRET_PARAM = re.compile(r"""((?:access_token|secret)(?:=|["']?\s*:\s*["']))[^&\s"',;}]+""", re.IGNORECASE)
_MIN_SECRET = 4  # shorter configured "secrets" would blank out ordinary words
# WeChat puts the sender's openid in the callback URL, so request logs (the development server's, a proxy's
# access log routed through logging) would carry it raw: it is replaced by the same hash the bot.message line uses.
OPENID_PARAM = re.compile(r"([?&]openid=)([A-Za-z0-9_-]{8,})")  # in a URL only: bot.message's openid= is hashed


def hash_openid(config: "Config", openid: str | None) -> str | None:
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


def new_trace(config: "Config", inbound: "Inbound") -> Trace:
    """The trace of a message before (or without) its job: what the push says."""
    message = inbound.message
    return {"msg_id": str(inbound.msg_id), "openid": hash_openid(config, getattr(message, "source", None)),
            "type": message.type, "steps": {}, "recognizer": None, "outcome": "unfinished"}


def add_step(trace: Trace, name: str, seconds: float) -> None:
    """Record a step's duration in ms (a step that ran twice, e.g. two downloads, adds up)."""
    steps = trace.setdefault("steps", {})
    steps[name] = round(steps.get(name, 0.0) + seconds * 1000, 1)


def emit(trace: Trace, path: str, *, tries: int | None = None, sent: bool | None = None,
         reason: str | None = None) -> None:
    """Log the message's one line and count it in the metrics; called once, where delivery is decided."""
    fields: dict[str, Any] = {**trace, "path": path}
    if tries is not None:
        fields["tries"] = tries
    if sent is not None:
        fields["sent"] = sent
    if reason:
        fields["reason"] = reason
    level = logging.ERROR if path == "undeliverable" or sent is False else logging.INFO
    if log.isEnabledFor(level):  # at WARNING the INFO line is not even formatted
        log.log(level, "message %s", _text(fields), extra={"fields": fields})
    message_done(fields)


def _text(fields: dict[str, Any]) -> str:
    """``key=value`` pairs; steps as ``steps=download:12.0,poll:310.5``."""
    parts = []
    for key, value in fields.items():
        if key == "steps":
            value = ",".join(f"{k}:{v:g}" for k, v in value.items()) or "-"
        elif value is None:
            value = "-"
        elif isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, str) and (not value or " " in value or '"' in value):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={value}")
    return " ".join(parts)


# -- output: formatters and the redacting filter --------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and a record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        data.update(getattr(record, "fields", None) or {})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


class RedactFilter(logging.Filter):
    """Defence in depth: whatever a library or a handler logs, configured secrets and access tokens are
    replaced by ``***`` in the message, the structured fields and the traceback text; with ``hash_openid``,
    an ``openid=`` URL parameter shows the hashed openid instead of the raw one."""

    def __init__(self, secrets: Iterable[str], hash_openid: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self.hash_openid = hash_openid

    def redact(self, text: str) -> str:
        text = SECRET_PARAM.sub(lambda m: f"{m.group(1)}***", text)
        if self.hash_openid is not None and "openid=" in text:
            hashed = self.hash_openid
            text = OPENID_PARAM.sub(lambda m: f"{m.group(1)}{hashed(m.group(2))}", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            dumped = json.dumps(fields, ensure_ascii=False, default=str)
            redacted = self.redact(dumped)
            if redacted != dumped:  # nothing to hide (the usual case): keep the fields as they are
                record.fields = json.loads(redacted)
        return True


def config_secrets(config: "Config") -> list[str]:
    """Every secret the config holds: what :class:`RedactFilter` keeps out of the logs."""
    return [config.wechat.appsecret, config.wechat.token, config.wechat.encoding_aes_key, config.forward.secret,
            config.voice.openai.api_key, config.metrics.token, config.logging.openid_salt]


def install_handler(level: str, fmt: str = "text", secrets: Iterable[str] = (), stream: TextIO | None = None,
                    hash_openid: Callable[[str], str | None] | None = None) -> logging.Handler:
    """Replace this module's root handler (calling it again reconfigures, never duplicates output)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_wvb", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._wvb = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactFilter(secrets, hash_openid))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return handler
