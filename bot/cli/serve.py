"""``python -m bot serve`` and ``run``: the development server (and, for ``run``, the local WeChat sandbox).

The listening socket is bound before anything says "serving", and a port in use is one line naming the port
and the likely cause (another ``make run``), never werkzeug's multi-line message or a traceback. Flask's banner
and werkzeug's terminal colours are left out: they end up raw in log files and break JSON logs.
"""
from __future__ import annotations

import argparse
import errno
import logging
import re
import shlex
import socket
import sys
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from bot.cli.common import keys_at, load, sandbox_address, sandbox_moved, webhook_url
from bot.config import Config
from bot.ops.logs import announce, setup_logging
from bot.runtime import customer_service_memory
from bot.web.app import create_app

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class PortError(Exception):
    """A port the command cannot listen on: one line for the user (exit status 1)."""


class _PlainRequestHandler(WSGIRequestHandler):
    """werkzeug's request line without its ANSI colours (a 403 would be written as ``\\x1b[31m…``)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        line = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", self.requestline)
        self.log("info", '"%s" %s %s', line, code, size)


def listen(host: str, port: int, what: str, hint: str) -> socket.socket:
    """A listening socket on ``host:port``, or :class:`PortError` saying why not and what to do."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does: TIME_WAIT is no conflict
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortError(f"cannot start {what} on {host}:{port}: the port is already in use, most likely by "
                            f"another `make run` or `python -m bot serve` still running; stop it, or {hint}") from None
        raise PortError(f"cannot start {what} on {host}:{port}: {exc.strerror or exc}; {hint}") from None
    return sock


def dev_server(app: Any, sock: socket.socket) -> BaseWSGIServer:
    """werkzeug's threaded server on an already bound socket (werkzeug duplicates it; ours is closed)."""
    host, port = sock.getsockname()[:2]
    try:
        return make_server(host, port, app, threaded=True, request_handler=_PlainRequestHandler, fd=sock.fileno())
    finally:
        sock.close()


def fail(config: Config, message: str) -> int:
    """A command's fatal error: one plain line, or with ``[logging] format = "json"`` one JSON record."""
    if config.logging.format == "json":
        logging.getLogger("bot.cli").error(message)
    else:
        print(f"error: {message}", file=sys.stderr)
    return 1


def cmd_serve(args: argparse.Namespace) -> int:
    """Development server for the config's bot (gunicorn in production)."""
    config, which = load(args.config)
    setup_logging(config)
    announce(config, which)
    return _serve(config, args, create_app(config))


def _serve(config: Config, args: argparse.Namespace, app: Any, sock: socket.socket | None = None) -> int:
    """Bind (unless ``sock`` is bound already), then say "serving" and serve until Ctrl-C."""
    host, port = args.host or config.server.host, args.port or config.server.port
    try:
        sock = sock or listen(host, port, "the bot", "pass --port (or change [server] port)")
    except PortError as exc:
        return fail(config, str(exc))
    server = dev_server(app, sock)
    for webhook in app.extensions.get("wechat_voicebot_accounts", {}).values():
        memory = customer_service_memory(webhook.config, webhook.services) if webhook.services else None
        if memory:  # asked again now that the sandbox (run) is up
            announce(config, memory)
    for account in config.served():
        name = f" (account {account.account.name}, {account.account.kind})" if account.account.name else ""
        announce(config, f"serving {webhook_url(account, host, port)}{name} (development server; use gunicorn in "
                         "production)")
    server.serve_forever(poll_interval=0.2)  # returns (and closes the socket) on Ctrl-C
    return 0


def sandbox_accounts(config: Config) -> dict[str, Any]:
    """The credentials the sandbox plays: the first Official Account's and the first WeCom app's."""
    played: dict[str, Any] = {}
    for account in reversed(config.served()):
        if account.account.kind == "wecom_app":
            played.update(wecom_corp_id=account.wechat.appid, wecom_secret=account.wechat.appsecret,
                          wecom_agent_id=account.account.agent_id)
        else:
            played.update(appid=account.wechat.appid, appsecret=account.wechat.appsecret)
    return played


def cmd_run(args: argparse.Namespace) -> int:
    """Development: the sandbox (when api_base_url is local) and the bot, in one process."""
    config, which = load(args.config)
    if args.sandbox_port is not None and sandbox_address(config) is None:
        return fail(config, f"--sandbox-port: [wechat] api_base_url is not a local sandbox "
                            f"({config.wechat.api_base_url}): there is no sandbox to move")
    config = sandbox_moved(config, args.sandbox_port)
    setup_logging(config)
    announce(config, which)
    app = create_app(config)
    address = sandbox_address(config)
    host, port = args.host or config.server.host, args.port or config.server.port
    try:
        sock = listen(host, port, "the bot", "pass --port (make run PORT=…), or change [server] port")
        if address:  # probed first: the sandbox's own server prints werkzeug's lines when the port is taken
            keys = keys_at(config, address)
            listen(*address, "the WeChat API sandbox", "pass --sandbox-port (make run SANDBOX_PORT=…), or change "
                   f"the port in {', '.join(keys[:-1]) + ' and ' if len(keys) > 1 else ''}{keys[-1]}").close()
    except PortError as exc:
        return fail(config, str(exc))
    if address:
        from bot.sandbox import Sandbox
        unverified = bool(getattr(args, "unverified", False))
        retired = bool(getattr(args, "recognition_retired", False))
        played = sandbox_accounts(config)
        if unverified:
            played.update(customer_service=False, temporary_media=False)
        sandbox = Sandbox(**played, host=address[0], port=address[1], recognition_retired=retired).start()
        kind = "an unverified account: no customer-service API" if unverified else "a verified account"
        kind += ", its voice recognition retired" if retired else ""
        announce(config, f"WeChat API sandbox on {sandbox.url}, playing {kind} (calls: {sandbox.url}/sandbox/calls)")
    else:
        announce(config, f"using the real WeChat API at {config.wechat.api_base_url}")
    where = (f" --port {port}" if port != config.server.port else "") + \
        (f" --sandbox-port {args.sandbox_port}" if args.sandbox_port is not None else "") + \
        (f" --config {shlex.quote(args.config)}" if args.config else "")  # simulate must read the same file
    for account in config.served():  # one line per account of an [accounts] config: each its own --account
        to = f"{where} --account {account.account.name}" if account.account.name else where
        announce(config, f"try:  .venv/bin/python -m bot simulate text '打开客厅的灯'{to}   and   "
                         f".venv/bin/python -m bot simulate voice '打开客厅的灯'{to}")
    return _serve(config, args, app, sock)
