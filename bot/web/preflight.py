"""The WSGI entry's config, checked once before anything serves it.

Under gunicorn each worker imports ``bot.wsgi`` by itself, so a broken config used to be a traceback per worker
and "Worker failed to boot" (90-120 lines), and gunicorn kept trying. ``gunicorn.conf.py`` calls
:func:`preflight` in the master, before it forks: a config error is then the same one line as ``serve``'s, and
gunicorn exits 2 at once. The routers are loaded there too (a router that cannot be imported is a config
error, and the start-up warnings are written once, not once per worker).
"""
from __future__ import annotations

import os
import sys

from bot.config import Config, ConfigError, load_config
from bot.core.loading import load_routers
from bot.ops.logs import announce, setup_logging
from bot.runtime import check_config, customer_service_memory

ENV = "WECHAT_VOICEBOT_CONFIG"
NEXT_STEP = f"set {ENV}=FILE, or copy config.example.toml to config.toml and edit it"


def config_file() -> str:
    """The WSGI entry's config: ``$WECHAT_VOICEBOT_CONFIG``, else ``config.toml`` (never the example: its secrets
    are public)."""
    return os.environ.get(ENV) or "config.toml"


def load_checked(path: str | None = None) -> Config:
    """The config, refused for everything ``serve`` refuses (``ConfigError``, one line)."""
    config = load_config(path or config_file(), next_step=NEXT_STEP)
    check_config(config)
    return config


def preflight() -> Config:
    """gunicorn's master: load and check the config and its routers, or print the one line and exit 2."""
    path = config_file()
    try:
        config = load_checked(path)
        setup_logging(config)  # the master's start-up warnings (shadowed intents) go through the bot's logging
        load_routers(config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    announce(config, f"config {path}")
    memory = customer_service_memory(config)
    if memory:
        announce(config, memory)
    return config


def worker_config() -> Config:
    """A worker's config: checked again (the master may not have run :func:`preflight`), a failure being one
    line and gunicorn's "worker failed to boot" exit status, which stops gunicorn instead of respawning."""
    try:
        return load_checked()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None  # gunicorn's WORKER_BOOT_ERROR: the master halts
