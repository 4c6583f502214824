"""What every command does first: pick the config by the one rule, run every check that can refuse it, and say
which file it was, so that ``serve``, ``simulate`` and ``check`` never silently read different files."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bot.config import Config, ConfigError, config_path, load_config
from bot.runtime import check_config, store_url
from bot.store import Store


def load(path: str | None, *, build: bool = True) -> tuple[Config, str]:
    """The config a command uses (``--config``, else ``config.toml``, else ``config.example.toml``) and the line
    that says which file it is, for ``bot.ops.logs.announce``.

    Raises :class:`ConfigError` (one line) for anything ``serve`` would refuse (``build=False``: but the
    recognizers and synthesizers, for a command that builds no bot)."""
    chosen = config_path(path)
    try:
        config = load_config(chosen)
        check_config(config, build=build)
    except ConfigError as exc:
        if path is None and str(chosen) not in str(exc):  # the user did not name it: say which file it was
            raise ConfigError(f"{exc} (in {chosen})") from None
        raise
    note = ""
    if path is None and chosen.name == "config.example.toml":
        note = " (no config.toml here: the example, which talks to the local sandbox)"
    return config, f"config {chosen}{note}"


def webhook_url(config: Config, host: str | None = None, port: int | None = None) -> str:
    """The callback URL of a bot served for ``config`` on this machine (0.0.0.0 means "this machine")."""
    host = host or config.server.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port or config.server.port}{config.server.path}"


def bot_store(config: Config) -> Store | None:
    """The bot's own store, for a command that reads what the bot keeps (``simulate``: what it still owes;
    ``check``: what it remembers). None for memory:// (another process's memory), a SQLite file that does not
    exist (never created here) or a store that cannot be opened."""
    from bot.store import StoreError, open_store
    from bot.store.sqlite import MEMORY, path_from_url
    url = store_url(config)
    scheme = url.partition("://")[0]
    try:
        if scheme == "memory" or (scheme == "sqlite" and (path_from_url(url) == MEMORY
                                                           or not Path(path_from_url(url)).exists())):
            return None
        return open_store(url, prefix=config.storage.prefix)
    except (StoreError, ValueError, OSError):
        return None


# The keys that hold the URL of a service the local sandbox can play: the WeChat API, its speech and chat
# endpoints (config.example.toml points three of them at it), and anything else a config points there.
URL_KEYS = {"[wechat] api_base_url": ("wechat", "api_base_url"), "[voice.openai] url": ("voice", "openai", "url"),
            "[voice.reply.openai] url": ("voice", "reply", "openai", "url"), "[llm] url": ("llm", "url"),
            "[forward] url": ("forward", "url")}


def sandbox_address(config: Config) -> tuple[str, int] | None:
    """The sandbox ``run`` starts: only when an account's API base URL is plain http on this machine (the first
    such; a WeCom app's is the same server's ``/wecom``)."""
    for account in config.served():
        parts = urlsplit(account.wechat.api_base_url)
        if parts.hostname in ("127.0.0.1", "localhost", "::1") and parts.scheme == "http":
            return parts.hostname, parts.port or 80
    return None


def _value(config: Config, path: tuple[str, ...]) -> Any:
    value: Any = config
    for name in path:
        value = getattr(value, name)
    return value


def _keys(config: Config, address: tuple[str, int]) -> list[str]:
    found = []
    for key, path in URL_KEYS.items():
        try:
            parts = urlsplit(_value(config, path) or "")
        except AttributeError:  # a section no installed package declares here
            continue
        if parts.scheme == "http" and (parts.hostname, parts.port or 80) == address:
            found.append(key)
    return found


def keys_at(config: Config, address: tuple[str, int]) -> list[str]:
    """Every URL key that points at ``address`` (host, port), e.g. the sandbox's (an account's as
    ``[accounts.NAME] api_base_url``)."""
    found = _keys(config, address)
    for account in config.accounts:
        found += [key.replace("[wechat]", f"[accounts.{account.account.name}]") for key in _keys(account, address)
                  if key.startswith("[wechat]")]
    return found


def moved(config: Config, address: tuple[str, int], port: int) -> Config:
    """``config`` (and each of its accounts) with every URL key that points at ``address`` pointing at ``port``
    instead (``run --sandbox-port``, and ``simulate --sandbox-port`` to find that sandbox again)."""
    def replaced(obj: Any, path: tuple[str, ...], value: str) -> Any:
        if len(path) == 1:
            return obj.replace(**{path[0]: value}) if isinstance(obj, Config) else \
                dataclasses.replace(obj, **{path[0]: value})
        inner = replaced(getattr(obj, path[0]), path[1:], value)
        return obj.replace(**{path[0]: inner}) if isinstance(obj, Config) else \
            dataclasses.replace(obj, **{path[0]: inner})

    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    for key in _keys(config, address):
        path = URL_KEYS[key]
        parts = urlsplit(_value(config, path))
        config = replaced(config, path, urlunsplit(parts._replace(netloc=f"{host}:{port}")))
    if config.accounts:
        config = dataclasses.replace(config, accounts=tuple(moved(a, address, port) for a in config.accounts))
    return config


def sandbox_moved(config: Config, port: int | None) -> Config:
    """``--sandbox-port``: the config's sandbox (and every key pointing at it) on ``port``."""
    address = sandbox_address(config)
    if port is None or address is None:
        return config
    return moved(config, address, port)
