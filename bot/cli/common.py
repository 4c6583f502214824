"""What every command does first: pick the config by the one rule, run every check that can refuse it, and say
which file it was, so that ``serve``, ``simulate`` and ``check`` never silently read different files."""
from __future__ import annotations

from pathlib import Path

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
