"""Flask adapter: an app factory, a blueprint and an ``init_app`` extension over the core.

It only turns a Flask request into ``(method, query, body)`` and the core's answer back into a response.
"""
from __future__ import annotations

import functools
import itertools
import logging
import os
import socket
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flask import Blueprint, Flask, Response, request

from bot.config import Config, load_config
from bot.core.envelope import EnvelopeError
from bot.core.router import Router
from bot.core.webhook import Response as CoreResponse
from bot.core.webhook import Webhook
from bot.ops.logs import setup_mounted_logging
from bot.runtime import build_webhook as build
from bot.runtime import build_webhooks as build_all
from bot.web.metrics import register_metrics

ConfigLike = str | os.PathLike[str] | Config


def as_config(config: ConfigLike) -> Config:
    return config if isinstance(config, Config) else load_config(Path(config))


def build_webhook(config: ConfigLike, router: Router | None = None, **kwargs: Any) -> Webhook:
    """A core webhook with the services the config asks for (voice pipeline, delivery, store)."""
    return build(as_config(config), router=router, **kwargs)


def build_webhooks(config: ConfigLike, router: Router | None = None, **kwargs: Any) -> list[Webhook]:
    """A webhook per account of the config (``[accounts.NAME]``), or the one of a ``[wechat]`` config."""
    return build_all(as_config(config), router=router, **kwargs)


class _BodyDeadlines:
    """Cuts off clients that do not finish sending their body in time (one daemon thread for all requests).

    A client that sends its headers and then trickles or stalls the body would hold a server thread for as
    long as it likes: enough of them and a gthread worker answers nobody. WeChat never waits longer than
    ``[reply] wechat_timeout_s`` for an answer, so a body still arriving after that is not WeChat's: its
    socket is shut down, the blocked read returns, and the request ends with a 4xx.

    The thread looks at the armed deadlines every ``tick`` seconds instead of being woken per request: a
    wake-up per request (and the GIL hand-offs it brings) cost more CPU than the rest of the request did. A
    deadline so fires up to ``tick`` late; the thread stops after ``idle_s`` with nothing armed.
    """

    def __init__(self, tick: float = 0.1, idle_s: float = 30.0) -> None:
        self.tick, self.idle_s = tick, idle_s
        self._armed: dict[int, tuple[float, socket.socket]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_armed = 0.0

    def arm(self, sock: socket.socket, seconds: float) -> int:
        ticket, now = next(self._ids), time.monotonic()
        with self._lock:
            self._armed[ticket] = (now + seconds, sock)
            self._last_armed = now
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wvb-body-deadlines", daemon=True)
                self._thread.start()
        return ticket

    def disarm(self, ticket: int) -> bool:
        """False when the deadline already fired (the socket was shut down)."""
        with self._lock:
            return self._armed.pop(ticket, None) is not None

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            now = time.monotonic()
            with self._lock:
                due = [ticket for ticket, (deadline, _) in self._armed.items() if deadline <= now]
                socks = [self._armed.pop(ticket)[1] for ticket in due]
                stop = not self._armed and now - self._last_armed >= self.idle_s
                if stop:
                    self._thread = None  # the next arm() starts a new one
            for sock in socks:
                try:
                    sock.shutdown(socket.SHUT_RD)  # the 408 can still be written back
                except OSError:
                    pass
            if stop:
                return


_deadlines = _BodyDeadlines()


def _read_body(environ: dict[str, Any], limit: int, seconds: float) -> bytes | None:
    """Up to ``limit + 1`` bytes of the request body; None when the client did not send it within ``seconds``."""
    stream = environ["wsgi.input"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length >= 0:
        size = min(length, limit + 1)
    elif environ.get("wsgi.input_terminated"):  # chunked, and the server ends the stream for us
        size = limit + 1
    else:
        return b""  # HTTP/1.1: no length and not chunked means no body
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        return stream.read(size)
    ticket = _deadlines.arm(sock, seconds)
    try:
        body = stream.read(size)
    except Exception:  # the deadline shut the socket: a short body (werkzeug's ClientDisconnected) or OSError
        if _deadlines.disarm(ticket):
            raise
        return None
    return body if _deadlines.disarm(ticket) else None


def first_values(query_string: str) -> dict[str, str]:
    """The query as WeChat sends it: one value per name (the first, as Flask's ``request.args.get``).

    ``parse_qsl(query_string, keep_blank_values=True)``'s pairs, without its per-pair work for the plain
    names and values WeChat sends (only a pair with ``%`` or ``+`` in it is unquoted)."""
    query: dict[str, str] = {}
    for pair in query_string.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in pair or "+" in pair:
            name, value = unquote(name.replace("+", " ")), unquote(value.replace("+", " "))
        query.setdefault(name, value)
    return query


def serve_callback(webhook: Webhook, environ: dict[str, Any]) -> tuple[CoreResponse, bool]:
    """One callback request from a WSGI environ: the core's answer, and whether to close the connection
    (a refused body we did not read to its end: a client could trickle the rest for as long as it likes)."""
    limit = webhook.config.server.max_body_bytes
    method = environ.get("REQUEST_METHOD", "GET")
    length = environ.get("CONTENT_LENGTH")
    if length and length.isdigit() and int(length) > limit:
        return webhook.reject(EnvelopeError(413, "body too large", f"Content-Length {length} > {limit} bytes")), True
    body = b""
    if method == "POST":
        seconds = float(getattr(getattr(webhook.config, "reply", None), "wechat_timeout_s", 5.0))
        read = _read_body(environ, limit, seconds)
        if read is None:
            return webhook.reject(EnvelopeError(408, "body too slow", f"not received within {seconds:g} s")), True
        body = read
    result = webhook.handle(method, first_values(environ.get("QUERY_STRING", "")), body)
    return result, result.status == 413


def webhook_blueprint(webhook: Webhook | list[Webhook], name: str = "wechat_voicebot") -> Blueprint:
    """A blueprint serving each webhook's callback at its ``[server] path`` (an account's ``path``); mount it
    with any ``url_prefix``."""
    bp = Blueprint(name, __name__)
    for one in webhook if isinstance(webhook, list) else [webhook]:
        def callback(one: Webhook = one) -> Response:
            result, close = serve_callback(one, request.environ)
            return Response(result.body, status=result.status, content_type=result.content_type,
                            headers={"Connection": "close"} if close else None)

        endpoint = f"callback_{one.account}" if one.account else "callback"
        bp.add_url_rule(one.config.server.path, endpoint, callback, methods=["GET", "POST"])
    return bp


class CallbackFastPath:
    """WSGI middleware for :func:`create_app`: the callback paths go straight to the core, skipping Flask's
    request context and routing (they cost more per message than the whole protocol work); everything
    else (``/healthz``, ``/metrics``, your routes) goes to the Flask app as usual."""

    def __init__(self, webhook: Webhook | list[Webhook], app: Any) -> None:
        webhooks = webhook if isinstance(webhook, list) else [webhook]
        self.app, self.webhooks = app, {one.config.server.path: one for one in webhooks}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        webhook = self.webhooks.get(environ.get("PATH_INFO", ""))
        if webhook is None or environ.get("REQUEST_METHOD") not in ("GET", "POST"):
            return self.app(environ, start_response)
        result, close = serve_callback(webhook, environ)
        body = result.body.encode("utf-8")
        headers = [("Content-Type", result.content_type), ("Content-Length", str(len(body)))]
        if close:
            headers.append(("Connection", "close"))
        start_response(_status_line(result.status), headers)
        return [body]


@functools.lru_cache(maxsize=64)
def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def add_healthz(app: Flask) -> None:
    """``GET /healthz`` for load balancers, unless the app already has that path (a mounted bot's host app may)."""
    if any(rule.rule == "/healthz" for rule in app.url_map.iter_rules()):
        return
    app.add_url_rule("/healthz", "wechat_voicebot_healthz", lambda: {"status": "ok"}, methods=["GET"])


class VoiceBot:
    """Flask extension: ``VoiceBot(app, config)`` or ``bot = VoiceBot(); bot.init_app(app)``.

    ``init_app`` reads ``app.config["WECHAT_VOICEBOT_CONFIG"]`` (a path or Config) when no config is given. A
    config with ``[accounts.NAME]`` serves every account at its path (``bot.webhooks``, by name).
    """

    def __init__(self, app: Flask | None = None, config: ConfigLike | None = None, router: Router | None = None) -> None:
        self.config = config
        self.router = router
        self.webhook: Webhook | None = None
        self.webhooks: dict[str, Webhook] = {}
        self.log_filter: logging.Filter | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, config: ConfigLike | None = None) -> Webhook:
        """Serve the config's accounts in ``app``; the first account's webhook is returned (the only one of a
        [wechat] config). The bot's ``[logging]`` applies to its own loggers only, and the openid is hidden in the
        request lines of werkzeug and gunicorn (``self.log_filter`` for any other logger of yours that writes
        request URLs)."""
        config = config or self.config or app.config.get("WECHAT_VOICEBOT_CONFIG")
        if config is None:
            raise RuntimeError("VoiceBot.init_app: pass config= or set app.config['WECHAT_VOICEBOT_CONFIG']")
        config = as_config(config)
        webhooks = build_webhooks(config, self.router)
        self.webhook, self.webhooks = webhooks[0], {one.account: one for one in webhooks}
        self.log_filter = setup_mounted_logging(config)
        app.register_blueprint(webhook_blueprint(webhooks))
        app.extensions["wechat_voicebot"] = self.webhook
        app.extensions["wechat_voicebot_accounts"] = self.webhooks
        add_healthz(app)
        return self.webhook


def create_app(config: ConfigLike, router: Router | None = None, *, webhook: Webhook | None = None,
               **kwargs: Any) -> Flask:
    """The whole bot as a Flask app: each account's callback at its path and ``GET /healthz``.

    ``webhook``: serve one you composed yourself instead of the ones the config describes."""
    app = Flask("wechat_voicebot")
    config = webhook.config if webhook is not None else as_config(config)
    webhooks = [webhook] if webhook is not None else build_webhooks(config, router, **kwargs)
    app.register_blueprint(webhook_blueprint(webhooks))
    app.wsgi_app = CallbackFastPath(webhooks, app.wsgi_app)  # type: ignore[method-assign]
    app.extensions["wechat_voicebot"] = webhooks[0]
    app.extensions["wechat_voicebot_accounts"] = {one.account: one for one in webhooks}
    add_healthz(app)
    register_metrics(app, config)  # GET [metrics] path, when [metrics] enabled

    return app
