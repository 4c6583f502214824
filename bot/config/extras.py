"""The optional extras a config can name, checked at start-up, and how to install one the way the bot was installed.

A config that names a part whose extra is missing (``synthesizers = ["espeak"]`` without the ``espeak`` extra) is
refused when it is loaded, in every entry point, with the command that adds it — instead of failing on each
message. ``pip install 'wechat-voicebot[llm]'`` only works for an install from the package index: an install from
a clone or a path needs that path, and an editable one ``-e`` (PEP 610's ``direct_url.json`` says which).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from importlib import metadata
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from bot.config.schema import Config

DISTRIBUTION = "wechat-voicebot"
# extra -> the modules it brings (pyproject.toml [project.optional-dependencies])
EXTRAS = {"espeak": ("espeakng_loader",), "llm": ("openai",), "redis": ("redis", "rq"), "server": ("gunicorn",)}


def install_hint(extra: str) -> str:
    """The command that adds ``extra`` to this installation: ``<python> -m pip install 'SOURCE[extra]'`` where
    SOURCE is the clone or path it was installed from (with ``-e`` for an editable install), else the package
    index's name."""
    target, editable = f"{DISTRIBUTION}[{extra}]", False
    # the installed one says how it was installed (a checkout's own *.egg-info next to it says nothing)
    direct = next((text for d in metadata.distributions(name=DISTRIBUTION) if (text := d.read_text("direct_url.json"))),
                  None)
    if direct:
        try:
            info = json.loads(direct)
            url = str(info["url"])
            editable = bool((info.get("dir_info") or {}).get("editable"))
        except (ValueError, KeyError, TypeError, AttributeError):
            url = ""
        parts = urlsplit(url)
        if parts.scheme == "file":
            target = f"{unquote(parts.path)}[{extra}]"
        elif url:
            target = f"{DISTRIBUTION}[{extra}] @ {url}"
    python = sys.executable
    try:
        relative = os.path.relpath(python)
        python = relative if not relative.startswith("..") else python
    except ValueError:  # another drive (Windows)
        pass
    return f"{python} -m pip install {'-e ' if editable else ''}{shlex.quote(target)}"


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found, not imported: nothing runs)."""
    out = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(module)
    return out


def needs(cfg: Config) -> list[tuple[str, str, str]]:
    """``(key, what, extra)`` for each optional part the config names."""
    out = [(f"[voice.reply] synthesizers[{i}]", "'espeak'", "espeak")
           for i, spec in enumerate(cfg.voice.reply.synthesizers) if spec == "espeak"]
    out += [(f"[handlers] routers[{i}]", repr(spec), "llm")
            for i, spec in enumerate(cfg.handlers.routers) if spec.split(":")[0] in ("handlers.llm", "handlers.llm.handler")]
    if cfg.storage.url.startswith(("redis://", "rediss://")):
        out.append(("[storage] url", "a redis:// url", "redis"))
    elif cfg.reply.executor == "rq":
        out.append(("[reply] executor", '"rq"', "redis"))
    return out


def check_extras(cfg: Config) -> None:
    """Refuse a config that names a part whose extra is not installed: one line with the command that adds it."""
    from bot.config.schema import ConfigError
    for key, what, extra in needs(cfg):
        absent = missing(extra)
        if absent:
            raise ConfigError(f"{key}: {what} needs the {extra} extra, which is not installed (no module "
                              f"{absent[0]!r}): {install_hint(extra)}")

