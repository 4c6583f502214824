"""Log output: text or JSON lines on stderr, every line passed through a filter that redacts secrets.

Whatever a library or a handler logs, configured secrets, access tokens and raw openids in URLs never reach
the output (``[logging]``; the ``bot.message`` line itself is built in bot/ops/trace.py).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from bot.ops.account import ACCOUNT
from bot.ops.trace import hash_openid

if TYPE_CHECKING:
    from bot.config import Config

# ``access_token=...`` / ``secret=...`` in URLs, and the same keys in JSON or repr'd dicts.
SECRET_PARAM = re.compile(r"""((?:access_token|secret)(?:=|["']?\s*:\s*["']))[^&\s"',;}]+""", re.IGNORECASE)
_MIN_SECRET = 4  # shorter configured "secrets" would blank out ordinary words
# WeChat puts the sender's openid in the callback URL, so request logs (the development server's, a proxy's
# access log routed through logging) would carry it raw: it is replaced by the same hash the bot.message line uses.
HASHED = re.compile(r"[0-9a-f]{12}")  # what hash_openid makes of an openid (bot/ops/trace.py)
OPENID_PARAM = re.compile(r"([?&]openid=)([A-Za-z0-9_-]{8,})")  # in a URL only: bot.message's openid= is hashed
# An event's id is FromUserName:CreateTime (events have no MsgId). bot.message shows it hashed already
# (bot/ops/trace.py message_id); other lines (delivery's) get the same hash here. Hashes are 12 characters,
# openids 28: only the longer ones are replaced.
EVENT_ID = re.compile(r"""(msg_id["']?\s*[=:]\s*["']?)([A-Za-z0-9_-]{16,})(?=:\d)""")
# Terminal colour codes (werkzeug colours request lines by status): raw in a log file or a JSON string.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# json.dumps(..., ensure_ascii=False, default=str) without building an encoder per call (same output).
_dumps = json.JSONEncoder(ensure_ascii=False, default=str).encode


def may_hold_secret_param(text: str) -> bool:
    """A cheap exact pre-test for :data:`SECRET_PARAM`, whose case-insensitive scan was most of the cost of
    redacting a line that holds nothing (the ``bot.message`` line, every message). A match holds "secret" or
    "access_token" in some case; IGNORECASE matches the letters of "ecret" and "acce" only in their ASCII
    cases, which ``lower()`` maps back (the ſ and K it also takes for s and k are in neither)."""
    lowered = text.lower()
    return "ecret" in lowered or "acce" in lowered


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and a record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if _account_of(record):
            data["account"] = record.account  # type: ignore[attr-defined]
        data.update(getattr(record, "fields", None) or {})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        return _dumps(data)


class TextFormatter(logging.Formatter):
    """``%(asctime)s %(levelname)s %(name)s: %(message)s`` with logging's own time format, the date and time
    of day built once a second: localtime and strftime were half the cost of formatting a line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second: tuple[int, str] = (-1, "")
        self._with_account = logging.PercentStyle("%(asctime)s %(levelname)s %(name)s: account=%(account)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """A line of a named account's work says which: ``… bot.delivery: account=shop …``."""
        return (self._with_account if _account_of(record) else self._style).format(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if int(record.created) != second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (int(record.created), text)
        return f"{text},{int(record.msecs):03d}"  # logging.Formatter.default_msec_format


def _account_of(record: logging.LogRecord) -> str:
    """The named account a record's work was for (``record.account``, set by :class:`RedactFilter`), unless its
    structured fields name it already (the ``bot.message`` line)."""
    account = getattr(record, "account", "")
    return "" if not account or "account" in (getattr(record, "fields", None) or {}) else account


class RedactFilter(logging.Filter):
    """Defence in depth: whatever a library or a handler logs, configured secrets and access tokens are
    replaced by ``***`` in the message, the structured fields and the traceback text; with ``hash_openid``,
    an ``openid=`` URL parameter shows the hashed openid instead of the raw one. Terminal colour codes are
    dropped too: log lines go to files and JSON."""

    def __init__(self, secrets: Iterable[str], hash_openid: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self.hash_openid = hash_openid
        # A message built from its fields (bot.message: ``key=value`` of each) shows every secret or openid
        # they hold as it is, unless a secret has characters that the repr of a nested value escapes.
        self._verbatim = all(s.isprintable() and '"' not in s and "'" not in s and "\\" not in s
                             for s in self.secrets)

    def redact(self, text: str) -> str:
        # Each pattern runs only when a plain substring test says it could match (most lines: none does).
        if "\x1b" in text:
            text = ANSI.sub("", text)
        if may_hold_secret_param(text):
            text = SECRET_PARAM.sub(r"\1***", text)
        if self.hash_openid is not None:
            hashed = self.hash_openid

            def once(m: re.Match[str]) -> str:  # a value hashed already (by another bot's filter) stays as it is
                value = m.group(2)
                return m.group(0) if HASHED.fullmatch(value) else f"{m.group(1)}{hashed(value)}"
            if "?openid=" in text or "&openid=" in text:
                text = OPENID_PARAM.sub(once, text)
            if "msg_id" in text:
                text = EVENT_ID.sub(once, text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "account"):
            record.account = ACCOUNT.get()  # the thread that logs is the one that did the work
        message = record.getMessage()
        redacted = self.redact(message)
        changed = redacted != message
        if changed:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        fields = getattr(record, "fields", None)
        if fields and not changed and self._verbatim and getattr(record, "fields_in_message", False):
            fields = None  # nothing in the message to hide: nothing in the fields it was built from either
        if isinstance(fields, dict) and fields:
            dumped = _dumps(fields)
            redacted = self.redact(dumped)
            if redacted != dumped:  # nothing to hide (the usual case): keep the fields as they are
                record.fields = json.loads(redacted)
        return True


def config_secrets(config: Config) -> list[str]:
    """Every secret the config holds, every account's (``[accounts.NAME]``) and every declared section's
    (``repr=False`` keys: ``[forward] secret``, ``[llm] api_key``…): what :class:`RedactFilter` keeps out of the
    logs."""
    from bot.config.sections import secrets_of
    found = [config.voice.openai.api_key, config.voice.reply.openai.api_key, config.metrics.token,
             config.logging.openid_salt]
    for account in config.served():
        found += [account.wechat.appsecret, account.wechat.token, account.wechat.encoding_aes_key]
    for value in config.sections.values():
        found += secrets_of(value)
    return found


class SharedWritesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose lines the logging threads write for one another: a thread formats its line outside
    any lock and queues it; if no thread is writing, it writes every queued line (its own and those queued while
    it writes) in one ``write``; if one is, it returns at once and that thread writes the line.

    Why. Every message logs one INFO line, from one of 64 request threads a worker. The stdlib handler writes
    each under its lock, and the write gives the GIL up while the lock is held: the next threads to log queued on
    the lock, each to sleep and wake in turn (measured under load: README "Benchmarks"). Lines keep their order,
    and the last one is written before its writer returns.

    With ``batch_s`` (gunicorn's workers: bot/web/preflight.py), a line that comes less than ``batch_s`` after the
    last write is not written by its thread at all: a flusher thread writes what has queued every ``batch_s``
    while lines keep coming (so such a line is at most ``batch_s`` late), and goes idle after a quiet ``batch_s``.
    A line after a quiet spell is written at once by its thread, as is a WARNING or worse (with every line queued
    before it). Under load a worker then makes one ``write`` a ``batch_s`` instead of one a message: each write
    gave the GIL up and a request thread had to win it back. The price: lines queued when the process is killed
    (``kill -9``) are lost, at most ``batch_s`` of them; an exit that runs ``atexit`` (``sys.exit``, gunicorn's
    SIGTERM and SIGQUIT) writes them (``logging.shutdown`` flushes every handler). A forked child writes its lines
    at once (it may end with ``os._exit``, as RQ's work horses do)."""

    idle_s = 30.0  # an idle flusher thread ends after this long (the next busy spell starts another)

    def __init__(self, stream: TextIO | None = None, *, batch_s: float = 0.0) -> None:
        super().__init__(stream)
        self.batch_s = batch_s
        self._reset()
        _at_fork.add(self)

    def _reset(self) -> None:
        self._queued: list[str] = []
        self._writing = False  # a thread writes the queued lines until none is left: others only queue theirs
        self._armed = False  # the flusher writes the queued lines within batch_s: others only queue theirs
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()  # set when armed: the idle flusher goes on
        self._flusher: threading.Thread | None = None
        self._last_write = -math.inf  # time.monotonic() of the last write

    def handle(self, record: logging.LogRecord) -> Any:
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may return the record to use
            record = rv
        if not rv:
            return rv
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's own rule: a bad record is reported, never raised
            self.handleError(record)
            return rv
        later = record.levelno < logging.WARNING and self.batch_s > 0
        start: threading.Thread | None = None
        write = False
        with self._queue_lock:
            self._queued.append(line)
            if self._writing or later and self._armed:
                return rv
            if later and time.monotonic() - self._last_write < self.batch_s:  # lines come fast: the flusher writes it
                self._armed = True
                self._wake.set()
                if self._flusher is None:
                    self._flusher = start = threading.Thread(target=self._flush_later, name="wvb-log-writes",
                                                             daemon=True)
            else:
                self._writing = write = True
        if start is not None:
            start.start()
        if write:
            self._write_queued(record)
        return rv

    def _write_queued(self, record: logging.LogRecord | None) -> None:
        """Write the queued lines until none is left (this thread has the ``_writing`` turn), in order."""
        while True:
            with self._queue_lock:
                lines, self._queued = self._queued, []
                if not lines:
                    self._writing = False
                    return
                self._last_write = time.monotonic()
            try:
                with self.lock:  # type: ignore[union-attr]  # the stream's own lock: setStream, flush and close
                    self.stream.write("".join(lines))
                    self.stream.flush()
            except Exception:  # noqa: BLE001
                if record is not None:
                    self.handleError(record)

    def _flush_later(self) -> None:
        """The flusher: while armed, write what has queued ``batch_s`` after the last write; idle when a look
        finds nothing (ends after ``idle_s`` idle)."""
        while True:
            if not self._wake.wait(self.idle_s):
                with self._queue_lock:
                    if not self._armed:
                        self._flusher = None
                        return
                continue
            time.sleep(max(0.0, self._last_write + self.batch_s - time.monotonic()))
            with self._queue_lock:
                busy = self._writing  # a thread is writing them (a WARNING, a flush; a stream that blocks)
                if not busy and not self._queued:
                    self._armed = False
                    self._wake.clear()
                    continue
                self._writing = True  # this thread's turn, or still the writing thread's
            if busy:
                time.sleep(self.batch_s)  # look again later (a blocked write keeps _last_write old: never spin)
            else:
                self._write_queued(None)

    def flush(self) -> None:
        """Write the queued lines now (``logging.shutdown`` calls this at exit), then flush the stream."""
        with self._queue_lock:
            take = not self._writing and bool(self._queued)
            if take:
                self._writing = True
        if take:
            self._write_queued(None)
        super().flush()


_at_fork: weakref.WeakSet[SharedWritesHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child starts with no flusher, nothing queued (the parent writes its own lines) and no batching."""
    for handler in list(_at_fork):
        handler._reset()
        handler.batch_s = 0.0


os.register_at_fork(after_in_child=_after_fork_in_child)


_installed_secrets: set[str] = set()  # every secret a handler of this process was installed for


def install_handler(level: str, fmt: str = "text", secrets: Iterable[str] = (), stream: TextIO | None = None,
                    hash_openid: Callable[[str], str | None] | None = None, *,
                    logger: logging.Logger | None = None, batch_s: float = 0.0) -> logging.Handler:
    """Replace this module's handler on ``logger`` (default: the root; calling it again reconfigures, never
    duplicates output). The new handler still hides the secrets of every earlier one: a second bot set up in the
    same process (two Flask apps, two configs) must not make the first one's secrets appear."""
    target = logger or logging.getLogger()
    for old in [h for h in target.handlers if getattr(h, "_wvb", False)]:
        target.removeHandler(old)
        old.flush()  # lines it still holds (batch_s) come before the new handler's
    _installed_secrets.update(s for s in secrets if s)
    handler = SharedWritesHandler(stream or sys.stderr, batch_s=batch_s)
    handler._wvb = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactFilter(_installed_secrets, hash_openid))
    target.addHandler(handler)
    target.setLevel(getattr(logging, level.upper(), logging.INFO))
    return handler


def _hasher(config: Config) -> Callable[[str], str | None] | None:
    return (lambda openid: hash_openid(config, openid)) if config.logging.hash_openid else None


def setup_logging(config: Config | str = "INFO", stream: TextIO | None = None, *,
                  batch_s: float = 0.0) -> logging.Handler:
    """Log to stderr in ``[logging] format``, every line passed through the secret-redacting filter.

    Takes a Config (level, format and the secrets to redact) or just a level name; ``batch_s``: lines that come
    faster than that are written together, at most that late (:class:`SharedWritesHandler`)."""
    if isinstance(config, str):
        return install_handler(config, stream=stream, batch_s=batch_s)
    return install_handler(config.logging.level, config.logging.format, config_secrets(config), stream=stream,
                           hash_openid=_hasher(config), batch_s=batch_s)


# The request logs of the servers a host app runs under: werkzeug's development server and gunicorn's access log.
REQUEST_LOGGERS = ("werkzeug", "gunicorn.access")


def setup_mounted_logging(config: Config, stream: TextIO | None = None) -> RedactFilter:
    """A bot mounted into someone else's Flask app: ``[logging]`` (level, format, redaction) for the bot's own
    loggers only — ``bot`` and below get their handler and stop propagating, so the host's handlers neither see
    them twice nor decide their level — and the secrets and raw openids kept out of the request lines of
    werkzeug and gunicorn (WeChat puts ``openid=`` in the callback URL). The host's own loggers are left alone.
    Returns the filter, for any other logger of the host's that writes request URLs (``logger.addFilter``)."""
    bot = logging.getLogger("bot")
    install_handler(config.logging.level, config.logging.format, config_secrets(config), stream=stream,
                    hash_openid=_hasher(config), logger=bot)
    bot.propagate = False
    hide = RedactFilter(config_secrets(config), _hasher(config))
    hide._wvb = True  # type: ignore[attr-defined]
    for name in REQUEST_LOGGERS:
        requests_log = logging.getLogger(name)
        for old in [f for f in requests_log.filters if getattr(f, "_wvb", False)]:
            requests_log.removeFilter(old)
        requests_log.addFilter(hide)
    return hide


def announce(config: Config | None, line: str, stream: TextIO | None = None) -> None:
    """A command's status line (``config FILE``, ``serving URL``): ``wechat-voicebot: …`` on stderr, or with
    ``[logging] format = "json"`` (pass the config once logging is set up) a JSON record, so that whoever ships
    that stream sees JSON only."""
    if config is not None and config.logging.format == "json" and stream is None:
        logging.getLogger("bot.cli").info(line)
    else:
        print(f"wechat-voicebot: {line}", file=stream or sys.stderr, flush=True)
