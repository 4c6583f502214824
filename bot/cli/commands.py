"""``python -m bot``: serve the webhook, run the local WeChat sandbox, simulate a user, and more."""
from __future__ import annotations

import argparse
import sys
import time
from urllib.parse import urlsplit

from bot.config import Config, ConfigError, find_config
from bot.ops.logs import setup_logging
from bot.web.app import create_app

EPILOG = """\
examples:
  python -m bot run --config config.example.toml      sandbox + bot, no WeChat account needed
  python -m bot serve --config config.toml --port 8080
  python -m bot simulate text "打开客厅的灯"
  python -m bot simulate voice "打开客厅的灯"          needs the sandbox (python -m bot run)
  python -m bot sandbox --port 8090
  python -m bot worker --config config.toml           RQ worker, when [reply] executor = "rq"
  python -m bot check --config config.toml            is the WeChat API, store, ... ready? (exit 0/1)
production: gunicorn -c gunicorn.conf.py 'bot.wsgi:app'  (see README, "Deploying")
"""


def webhook_url(config: Config, host: str | None = None, port: int | None = None) -> str:
    host = host or config.server.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port or config.server.port}{config.server.path}"


def cmd_serve(args: argparse.Namespace) -> int:
    config = find_config(args.config)
    setup_logging(config)
    app = create_app(config)
    host, port = args.host or config.server.host, args.port or config.server.port
    print(f"wechat-voicebot: serving {webhook_url(config, host, port)} (development server; use gunicorn in production)",
          flush=True)
    app.run(host=host, port=port, threaded=True, use_reloader=False)
    return 0


def sandbox_address(config: Config) -> tuple[str, int] | None:
    """The sandbox to start for ``run``: only when the API base URL points at this machine."""
    parts = urlsplit(config.wechat.api_base_url)
    if parts.hostname in ("127.0.0.1", "localhost", "::1") and parts.scheme == "http":
        return parts.hostname, parts.port or 80
    return None


def cmd_run(args: argparse.Namespace) -> int:
    """Development: the sandbox (when api_base_url is local) and the bot, in one process."""
    config = find_config(args.config)
    address = sandbox_address(config)
    if address:
        from bot.sandbox import Sandbox
        sandbox = Sandbox(appid=config.wechat.appid, appsecret=config.wechat.appsecret,
                          host=address[0], port=address[1]).start()
        print(f"wechat-voicebot: WeChat API sandbox on {sandbox.url} (calls: {sandbox.url}/sandbox/calls)", flush=True)
    else:
        print(f"wechat-voicebot: using the real WeChat API at {config.wechat.api_base_url}", flush=True)
    print("try:  python -m bot simulate text '打开客厅的灯'   and   python -m bot simulate voice '打开客厅的灯'",
          flush=True)
    return cmd_serve(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from bot.testing import BotClient
    config = find_config(args.config)
    url = args.url or webhook_url(config)
    client = BotClient(config, url=url, mode=args.mode, openid=args.openid)
    started = time.perf_counter()
    try:
        if args.kind == "text":
            reply = client.text(args.content)
        elif args.kind == "event":
            reply = client.event(args.content)
        else:
            xml = voice_push(config, args)
            reply = client.send(xml)
    except OSError as exc:
        print(f"error: cannot reach the bot at {url}: {exc.__class__.__name__}. Is it running? (make run)",
              file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(str(reply))
    print(f"({client.envelope.mode} mode, HTTP {reply.status}, {elapsed:.2f}s)", file=sys.stderr)
    return 0 if reply.status == 200 else 1


def cmd_worker(args: argparse.Namespace) -> int:
    """An RQ worker running delivery jobs ([reply] executor = "rq") for one or more bots."""
    from bot.worker import run_worker
    configs = [find_config(path) for path in (args.config or [None])]
    setup_logging(configs[0])
    return run_worker(configs, burst=args.burst, name=args.name)


def voice_push(config: Config, args: argparse.Namespace) -> str:
    """Register a real clip for the sentence in the sandbox and build the push that names it."""
    import requests

    from bot.testing import messages
    if args.recognition is not None:
        return messages.voice(recognition=args.recognition, openid=args.openid)
    base = config.wechat.api_base_url.rstrip("/")
    r = requests.post(f"{base}/sandbox/voices", json={"text": args.content, "format": args.format,
                                                      "duration_s": args.duration, "with_16k": args.with_16k},
                      timeout=10)
    if r.status_code != 200:
        raise SystemExit(f"error: the sandbox at {base} refused the clip: HTTP {r.status_code} {r.text[:200]}")
    clip = r.json()
    return messages.voice(clip["media_id"], media_id_16k=clip.get("media_id_16k"), fmt=args.format,
                          openid=args.openid)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="wechat-voicebot: a WeChat Official Account webhook that understands voice.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="FILE", help="TOML config (default: config.toml, else config.example.toml)")
        return p

    for name, func, help_ in (("serve", cmd_serve, "serve the webhook (development server)"),
                              ("run", cmd_run, "start the local WeChat sandbox and the bot against it")):
        p = with_config(sub.add_parser(name, help=help_, description=help_))
        p.add_argument("--host", help="listen address (default: [server] host)")
        p.add_argument("--port", type=int, help="listen port (default: [server] port)")
        p.set_defaults(func=func)

    sub.add_parser("sandbox", help="run the local stand-in for api.weixin.qq.com (see: sandbox --help)")

    p = with_config(sub.add_parser("simulate", help="send a message as a WeChat user and print the reply",
                                   description="Sign (and encrypt) a push like WeChat, post it, print the reply."))
    p.add_argument("kind", choices=["text", "voice", "event"], help="what to send")
    p.add_argument("content", help="the text; for voice, the sentence the clip says; for event, its name")
    p.add_argument("--url", help="the webhook URL (default: from the config's [server])")
    p.add_argument("--mode", choices=["plaintext", "compatible", "safe"],
                   help="crypto mode (default: safe when encoding_aes_key is set)")
    p.add_argument("--openid", default="oSIMULATEDUSER00000000000000")
    # The sandbox synthesizes AMR only (PyAV cannot encode Speex): upload Speex files with POST /sandbox/media.
    p.add_argument("--format", default="amr", choices=["amr"], help="voice: clip format (the sandbox makes AMR)")
    p.add_argument("--duration", type=float, default=2.0, help="voice: clip length in seconds")
    p.add_argument("--with-16k", action="store_true", help="voice: also offer MediaId16K")
    p.add_argument("--recognition", help="voice: put this in <Recognition> instead of registering a clip")
    p.set_defaults(func=cmd_simulate)

    from bot.cli.check import cmd_check
    p = with_config(sub.add_parser("check", help="check the config, the WeChat API, the store, recognizers "
                                   "and routers", description="One line per check with the fix; exit 0 "
                                   "when all are ready, 1 otherwise, 2 for a broken config."))
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("worker", help="run an RQ worker for the delivery jobs ([reply] executor = \"rq\")",
                       description="Run delivery jobs (recognition + handlers) from Redis, apart from the web tier.")
    p.add_argument("--config", metavar="FILE", action="append", help="TOML config (repeat for several bots)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--name", help="worker name (default: RQ's)")
    p.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sandbox"]:  # the sandbox parses its own options (and its own --help)
        from bot.sandbox import main as sandbox_main
        return sandbox_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
