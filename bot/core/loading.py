"""Find routers named in the config: ``module:attribute`` paths or installed plugins by name."""
from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from bot.config import Config, ConfigError
from bot.config.collisions import collisions, import_hint, where_to_look
from bot.core.intents import intents_router, warn_shadowed
from bot.core.router import Router

PLUGIN_GROUP = "wechat_voicebot.routers"
log = logging.getLogger("bot.loading")
_warned: set[str] = set()


def load_router(spec: str, where: str = "[handlers] routers") -> Router:
    """``"pkg.module:router"`` (attribute may be a Router or a zero-argument factory) or a plugin name."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"{where}: cannot import module {module_name!r} ({exc}){import_hint(module_name)}") \
                from None
        except Exception as exc:  # someone's module may raise anything: one line, as for an ImportError
            raise ConfigError(f"{where}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise ConfigError(f"{where}: module {module_name!r} has no attribute {attr!r}") from None
        except ImportError as exc:  # an attribute the module imports on first use (PEP 562)
            raise ConfigError(f"{where}: cannot import module {module_name!r} ({exc})") from None
    else:
        found = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name == spec]
        if not found:
            raise ConfigError(f"{where}: {spec!r} is neither 'module:attribute' nor an installed plugin "
                              f"(entry point group {PLUGIN_GROUP!r})")
        try:
            obj = found[0].load()
        except Exception as exc:
            raise ConfigError(f"{where}: loading the plugin {spec!r} raised {type(exc).__name__}: {exc}") from None
    if callable(obj) and not isinstance(obj, Router):
        try:
            obj = obj()
        except Exception as exc:
            raise ConfigError(f"{where}: calling {spec!r} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, Router):
        raise ConfigError(f"{where}: {spec!r} is a {type(obj).__name__}, expected a bot.Router")
    return obj


def load_routers(config: Config) -> list[Router]:
    """The configured routers, in priority order: the ``[[intents]]`` (no-code) router first, then
    ``[handlers] routers``; handler directories are put on ``sys.path`` first. An intent that hides a router's
    keyword is a warning line at start-up (bot/core/intents.py)."""
    add_search_paths(config.base_dir / p for p in config.handlers.search_paths)
    warn_collisions(config)
    routers = [load_router(spec, f"[handlers] routers[{i}]") for i, spec in enumerate(config.handlers.routers)]
    intents = intents_router(config.intents)
    if intents is None:
        return routers
    warn_shadowed(config.intents, list(zip(config.handlers.routers, routers)), config)
    return [intents, *routers]


def warn_collisions(config: Config) -> list[str]:
    """A file of the user's named like the framework's packages (bot/config/collisions.py): one WARNING line each,
    once per process (a gunicorn worker inherits what its master said)."""
    lines = collisions(where_to_look(config.base_dir, config.handlers.search_paths))
    for line in lines:
        if line not in _warned:
            _warned.add(line)
            log.warning("%s", line)
    return lines


def add_search_paths(paths: Iterable[Path]) -> None:
    for path in paths:
        resolved = str(Path(path).resolve())
        if resolved not in sys.path:
            sys.path.insert(0, resolved)  # the user's handler modules win over same-named installed ones
