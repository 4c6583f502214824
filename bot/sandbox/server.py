"""A real local HTTP stand-in for api.weixin.qq.com, so the bot can be run and tested end to end offline.

Voice clips are pure tones (one distinct frequency per registered sentence): the recognizer endpoint
decodes what it is sent and answers the sentence whose tone it hears, so a transcode that breaks the
audio (wrong rate, pitch shift, silence) gets a wrong or empty transcript, as it would from WeChat.
Every latency is a setting: tests run with scaled-down clocks, never with hard-coded sleeps.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from bot.sandbox.account import SandboxAccount
from bot.sandbox.app import create_app

log = logging.getLogger("bot.sandbox")

_SECRET_PARAM = re.compile(r"((?:access_token|secret)=)[^&\s]+")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # tests make hundreds of calls
        pass


class _RedactingHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:  # no tokens in logs
        self.log("info", '"%s" %s %s', _SECRET_PARAM.sub(r"\1***", self.requestline), code, size)


class Sandbox(SandboxAccount):
    """The fake WeChat API: start it, point ``api_base_url`` at :attr:`url`, set the scene, read the calls."""

    def __init__(
        self,
        *,
        appid: str = "wxsandbox",
        appsecret: str = "sandbox-secret",
        host: str = "127.0.0.1",
        port: int = 0,
        recognition_latency_s: float = 0.3,
        window_s: float = 10.0,
        token_expires_in: float = 7200,
        token_grace_s: float = 0.0,
        log_requests: bool = False,
        customer_service: bool = True,
        temporary_media: bool = True,
        **settings: Any,
    ) -> None:
        """``customer_service=False`` plays an account without the customer-service API (48001 on send and
        typing: unverified accounts, personal subscription accounts among them); ``temporary_media=False``
        one that may not upload temporary media. ``settings`` are any others of ``state.SETTINGS_DEFAULTS``
        (cs_quota, cs_window_s, max_text_bytes, ...)."""
        super().__init__(appid=appid, appsecret=appsecret, recognition_latency_s=recognition_latency_s,
                         window_s=window_s, token_expires_in=token_expires_in, token_grace_s=token_grace_s,
                         customer_service=customer_service, temporary_media=temporary_media, **settings)
        self.host, self.port = host, port
        self.app = create_app(self)
        self._log_requests = log_requests
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server (the real port when started with port 0)."""
        if self._server is None:
            raise RuntimeError("the sandbox is not started: call start() first")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self._server.server_port}"

    def start(self) -> Sandbox:
        if self._server is not None:
            return self
        handler = _RedactingHandler if self._log_requests else _QuietHandler
        try:
            self._server = make_server(self.host, self.port, self.app, threaded=True, request_handler=handler)
        except SystemExit:  # werkzeug prints the reason and exits; a library must raise instead
            raise OSError(f"cannot listen on {self.host}:{self.port} (address in use or unavailable)") from None
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="wechat-sandbox", daemon=True)
        self._thread.start()
        log.info("WeChat API sandbox listening on %s", self.url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def describe_account(settings: dict[str, Any]) -> str:
    """One line on what the account may do, for the start-up banner."""
    if not settings["customer_service"]:
        cs = "no customer-service API (send/typing → 48001: late answers must wait for the user's next message)"
    else:
        cs = (f"customer service: {settings['cs_quota']} messages within {settings['cs_window_s']:g} s of the "
              f"user's message, text ≤ {settings['max_text_bytes']} bytes")
    media = "temporary media upload" if settings["temporary_media"] else "no temporary media (48001: use material)"
    recognition = ("voice recognition retired (every result empty and final, empty <Recognition> in pushes)"
                   if settings["recognition_retired"] else "voice recognition answers its clips")
    return f"{cs}; {media}; {recognition}"


def main(argv: list[str] | None = None) -> int:
    """``python -m bot.sandbox``: serve the sandbox until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m bot sandbox",
                                     description="Local stand-in for api.weixin.qq.com (tokens, media, voice "
                                                 "recognition, translation, customer-service messages) and the OpenAI-compatible "
                                                 "/v1/audio/speech and /v1/audio/transcriptions.",
                                     epilog="translatecontent knows a few phrases (今天天气很好, good morning, ...); "
                                            "anything else comes back as \"[en_US] text\": register more with "
                                            "POST /sandbox/translations {\"你好\": \"Hello\"}.")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8090,
                        help="listen port (default: %(default)s, the port of config.example.toml's api_base_url)")
    parser.add_argument("--appid", default="wxsandbox",
                        help="the AppID tokens are issued for; the bot's [wechat] appid (default: %(default)s)")
    parser.add_argument("--secret", default="sandbox-secret",
                        help="the AppSecret tokens are issued for; the bot's [wechat] appsecret (default: %(default)s)")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds before a recognition result is ready")
    parser.add_argument("--window", type=float, default=10.0, help="seconds a recognition result can be fetched")
    parser.add_argument("--voice", action="append", default=[], metavar="TEXT",
                        help="register a voice clip saying TEXT at start (repeatable)")
    account = parser.add_argument_group("the account")
    account.add_argument("--unverified", action="store_true",
                         help="an unverified account (e.g. a personal subscription account): no customer-service "
                              "API and no temporary media (both 48001); same as the two options below")
    account.add_argument("--no-customer-service", dest="customer_service", action="store_false",
                         help="message/custom/send and /typing answer 48001 (api unauthorized)")
    account.add_argument("--no-temporary-media", dest="temporary_media", action="store_false",
                         help="media/upload answers 48001: voice replies need permanent material")
    account.add_argument("--recognition-retired", action="store_true",
                         help="WeChat retired this account's voice recognition: queryrecoresultfortext answers "
                              '{"result": "", "is_end": true} every time and pushes carry an empty <Recognition> '
                              "(a bot needs a fallback recognizer: /v1/audio/transcriptions here)")
    account.add_argument("--cs-quota", type=int, default=5, metavar="N",
                         help="customer-service messages per user message (default 5; then 45047)")
    account.add_argument("--cs-window", type=float, default=48 * 3600.0, metavar="SECONDS",
                         help="how long after a user's message customer service may answer (default 48 h; then 45015)")
    account.add_argument("--max-text-bytes", type=int, default=2048, metavar="N",
                         help="UTF-8 bytes of a customer-service text (default 2048; over it 45002)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sandbox = Sandbox(appid=args.appid, appsecret=args.secret, host=args.host, port=args.port,
                      recognition_latency_s=args.latency, window_s=args.window, log_requests=True,
                      customer_service=args.customer_service and not args.unverified,
                      temporary_media=args.temporary_media and not args.unverified,
                      recognition_retired=args.recognition_retired,
                      cs_quota=args.cs_quota, cs_window_s=args.cs_window, max_text_bytes=args.max_text_bytes)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    url = sandbox.url
    print(f"WeChat API sandbox on {url}  (appid={args.appid}, recognition latency {args.latency:g}s, "
          f"window {args.window:g}s)")
    print(f"Account: {describe_account(sandbox.state.settings)}")
    print("Point a bot at it in its config:\n"
          f'  [wechat]\n  appid = "{args.appid}"\n  appsecret = "{args.secret}"\n  api_base_url = "{url}"')
    for text in args.voice:
        clip = sandbox.register_voice(text)
        print(f"  voice {text!r}: media_id={clip['media_id']} ({clip['frequency']:g} Hz tone)")
    print(f"Control: POST {url}/sandbox/voices {{\"text\": \"...\"}}, GET {url}/sandbox/calls, "
          f"POST {url}/sandbox/faults, POST {url}/sandbox/config, POST {url}/sandbox/reset; "
          f"GET {url}/sandbox/ shows it all.  Ctrl-C to stop.", flush=True)
    try:
        while sandbox._thread is not None and sandbox._thread.is_alive():
            sandbox._thread.join(timeout=1.0)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        sandbox.stop()
    return 0
