"""A user's files that Python would import instead of the framework's own top-level packages, ``bot`` and
``handlers`` (base layer: the config's own loading uses it for the sections the built-in handlers declare).

The names are the project's shape and stay. But ``python -m bot`` and gunicorn put the current directory first
on ``sys.path``, and ``[handlers] search_paths`` put the config's directory first: a ``bot.py`` there is imported
instead of the framework (``python -m bot`` then fails before any of its code runs: ``partially initialized
module 'bot'``), and a ``handlers/`` package hides the built-in routers (``No module named 'handlers.echo'``).
Each is said in one line that names the file and the fix — at start-up, in ``check``, and in the error of a
built-in router that cannot be imported because of it.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

# The directory that holds this installation's bot/ and handlers/ (site-packages, or a clone installed -e).
OURS = Path(__file__).resolve().parent.parent.parent
FIXES = {
    "bot": "`python -m bot` and gunicorn started in {where} would import it instead of the framework; rename it "
           "(e.g. mybot) and update [handlers] routers",
    "handlers": "Python finds one of the two first, and the modules of the other cannot be imported (your own, or "
                "the built-in routers handlers.echo, handlers.lights, ...); rename your package (e.g. myhandlers) and "
                "update [handlers] routers",
}


def found_in(directory: Path, name: str) -> Path | None:
    """The module or regular package ``name`` in ``directory`` (a folder without ``__init__.py`` is a namespace
    package, which never wins over a regular one)."""
    for candidate in (directory / f"{name}.py", directory / name / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def collisions(directories: Iterable[Path]) -> list[str]:
    """One line per file in ``directories`` named like the framework's packages but not them."""
    lines, seen = [], set()
    for directory in directories:
        resolved = Path(directory).resolve()
        if resolved in seen or resolved == OURS:
            continue
        seen.add(resolved)
        for name, fix in FIXES.items():
            path = found_in(resolved, name)
            if path is not None:
                lines.append(f"{path} shadows the wechat-voicebot package {name!r}: {fix.format(where=resolved)}")
    return lines


def where_to_look(base_dir: Path, search_paths: Iterable[str]) -> list[Path]:
    """The directories that come before the framework on ``sys.path``: the current one and the search paths."""
    return [Path.cwd(), *(base_dir / p for p in search_paths)]


def import_hint(module_name: str) -> str:
    """For an import under ``bot`` or ``handlers`` that failed: why, when a user's file takes the framework's name
    (it was found first), or the framework's package took the user's (it was imported first)."""
    top = module_name.partition(".")[0]
    if top not in FIXES:
        return ""
    fix = f"rename yours (e.g. my{top}) and update [handlers] routers"
    origin = getattr(sys.modules.get(top), "__file__", None)
    if origin is not None and not _ours(Path(origin), top):
        return f"; {origin} shadows the wechat-voicebot package {top!r}: {fix}"
    for entry in sys.path:
        other = found_in(Path(entry or "."), top)
        if other is not None and not _ours(other, top):
            return f"; {other} is named like the wechat-voicebot package {top!r}, which was imported first: {fix}"
    return ""


def _ours(path: Path, top: str) -> bool:
    return path.resolve() in (OURS / top / "__init__.py", OURS / f"{top}.py")
