"""``python -m bot``: serve the webhook, run the local WeChat sandbox, simulate a user, and more."""
from __future__ import annotations

import argparse
import sys

from bot.cli.common import load
from bot.cli.serve import cmd_run, cmd_serve
from bot.cli.simulate import add_arguments as simulate_arguments
from bot.cli.simulate import cmd_simulate
from bot.config import ConfigError
from bot.ops.logs import announce, setup_logging
from bot.store import StoreError

EPILOG = """\
Every command reads --config FILE, else config.toml, else config.example.toml, and says which.
examples:
  python -m bot run                                   sandbox + bot (config.example.toml: no WeChat account needed)
  python -m bot run --port 28080 --sandbox-port 28090  the same on other ports (make run PORT=… SANDBOX_PORT=…)
  python -m bot serve --config config.toml --port 8080
  python -m bot simulate text "打开客厅的灯"            plays WeChat's retries; --once for a single post
  python -m bot simulate voice "打开客厅的灯"          needs the sandbox (python -m bot run)
  python -m bot sandbox --port 8090
  python -m bot worker --config config.toml           RQ worker, when [reply] executor = "rq"
  python -m bot check --config config.toml            is the WeChat API, store, ... ready? (exit 0/1)
production: gunicorn -c python:bot.web.gunicorn_conf   (see README, "Deploying")
"""


def cmd_worker(args: argparse.Namespace) -> int:
    """An RQ worker running delivery jobs ([reply] executor = "rq") for one or more bots."""
    from bot.worker import run_worker
    loaded = [load(path) for path in (args.config or [None])]
    configs = [config for config, _ in loaded]
    setup_logging(configs[0])
    for config, which in loaded:
        announce(config, which)
    return run_worker(configs, burst=args.burst, name=args.name)


def installed_version() -> str:
    """The installed distribution's version (pyproject.toml's, as pip recorded it)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("wechat-voicebot")
    except PackageNotFoundError:
        return "(not installed: run from a checkout without pip install)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="wechat-voicebot: a WeChat Official Account webhook that understands voice.")
    parser.add_argument("--version", action="version", version=f"wechat-voicebot {installed_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="FILE", help="TOML config (default: config.toml, else config.example.toml)")
        return p

    for name, func, help_ in (("serve", cmd_serve, "serve the webhook (development server)"),
                              ("run", cmd_run, "start the local WeChat sandbox and the bot against it")):
        p = with_config(sub.add_parser(name, help=help_, description=help_))
        p.add_argument("--host", help="listen address (default: [server] host)")
        p.add_argument("--port", type=int, help="listen port (default: [server] port)")
        if name == "run":
            p.add_argument("--sandbox-port", type=int, metavar="PORT",
                           help="run the sandbox on this port, and point every key that points at it there "
                                "([wechat] api_base_url, [llm] url, ...; default: the port in [wechat] api_base_url)")
            p.add_argument("--unverified", action="store_true",
                           help="the sandbox plays an unverified account (no customer-service API, errcode "
                                "48001): late answers wait for the user's next message (README, \"Delivery\")")
            p.add_argument("--recognition-retired", action="store_true",
                           help="the sandbox plays an account whose voice recognition WeChat retired (every result "
                                "empty and final): voice needs a fallback recognizer (README, \"Voice recognition\")")
        p.set_defaults(func=func)

    sub.add_parser("sandbox", help="run the local stand-in for api.weixin.qq.com (see: sandbox --help)")

    p = with_config(sub.add_parser(
        "simulate", help="send a message as a WeChat user and print what the user sees",
        description="Sign (and encrypt) a push like WeChat, post it with WeChat's retries, and print every "
                    "reply the user sees (passive and customer-service) with the second it arrived."))
    simulate_arguments(p)
    p.set_defaults(func=cmd_simulate)

    from bot.cli.check import cmd_check
    p = with_config(sub.add_parser("check", help="check the config, the WeChat API, the store, recognizers "
                                   "and routers", description="One line per check with the fix; exit 0 "
                                   "when all are ready, 1 otherwise, 2 for a broken config."))
    p.add_argument("--voice", metavar="FILE", help="a recording (amr, mp3, wav, m4a, ...) every recognizer must "
                                                   "hear (default: a sentence spoken by espeak-ng, when installed)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("worker", help="run an RQ worker for the delivery jobs ([reply] executor = \"rq\")",
                       description="Run delivery jobs (recognition + handlers) from Redis, apart from the web tier.")
    p.add_argument("--config", metavar="FILE", action="append",
                   help="TOML config, repeat for several bots (default: config.toml, else config.example.toml)")
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
    except StoreError as exc:  # at start-up (serving, a command handles its own): e.g. a SQLite file it cannot create
        print(f"error: [storage] url: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
