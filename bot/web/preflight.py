"""The WSGI entry's config, checked once before anything serves it.

Under gunicorn each worker imports ``bot.wsgi`` by itself, so a broken config used to be a traceback per worker
and "Worker failed to boot" (90-120 lines), and gunicorn kept trying. The gunicorn settings
(bot/web/gunicorn_conf.py) call :func:`preflight` in the master, before it forks: a config error is then the same
one line as ``serve``'s, and gunicorn exits 2 at once. The routers are loaded there too (a router that cannot be imported is a config
error, and the start-up warnings are written once, not once per worker).
"""
from __future__ import annotations

import os
import sys

from flask import Flask

from bot.config import Config, ConfigError, load_config
from bot.core.loading import load_routers
from bot.ops.logs import announce, setup_logging
from bot.runtime import check_config, customer_service_memory
from bot.store import StoreError
from bot.web.app import create_app

ENV = "WECHAT_VOICEBOT_CONFIG"
# A worker's log lines that come less than this apart are written together, by one thread, at most this late
# (bot/ops/logs.py SharedWritesHandler): under load a write per message was a GIL hand-off per message.
WORKER_LOG_BATCH_S = 0.02
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
    try:
        memory = customer_service_memory(config)  # opens the store: one that cannot be opened stops here
    except StoreError as exc:
        print(f"error: [storage] url: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    if memory:
        announce(config, memory)
    return config


def worker_app() -> Flask:
    """A worker's app (``bot.wsgi:app``): a config, router or store it cannot start with is one line and gunicorn's
    "worker failed to boot" exit status, as in :func:`worker_config`."""
    config = worker_config()
    setup_logging(config, batch_s=WORKER_LOG_BATCH_S)
    try:
        return create_app(config)
    except ConfigError as exc:  # a router that cannot be loaded, when the master ran no preflight
        print(f"config error: {exc}", file=sys.stderr, flush=True)
    except StoreError as exc:
        print(f"error: [storage] url: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(3)


def worker_config() -> Config:
    """A worker's config: checked again (the master may not have run :func:`preflight`), a failure being one
    line and gunicorn's "worker failed to boot" exit status, which stops gunicorn instead of respawning."""
    try:
        return load_checked()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None  # gunicorn's WORKER_BOOT_ERROR: the master halts
