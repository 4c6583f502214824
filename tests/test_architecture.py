"""The layers of ``bot/`` hold: no import circles, and no import that points up a layer.

Every ``import`` counts, including those inside functions and under ``TYPE_CHECKING``: a lazy import that
closes a loop is still a loop, and a type-only import upwards is still a dependency the wrong way.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parent.parent / "bot"

# Lower numbers are lower layers; a module may import its own layer and the ones below it (README,
# "Architecture"). Inside one layer the no-circle rule still applies.
LAYERS = {
    "bot.config": 0, "bot.ops": 0,  # base
    "bot.store": 1, "bot.wechat": 2, "bot.voice": 3,  # services
    "bot.core": 4,
    "bot.delivery": 5,
    "bot.runtime": 6, "bot.worker": 6,  # wiring
    "bot.web": 7, "bot.cli": 7, "bot.testing": 7, "bot.sandbox": 7, "bot.wsgi": 7, "bot.__main__": 7,
    "bot": 8,  # the public names: bot/__init__.py
}
LAYER_NAMES = {0: "base (config, ops)", 1: "store", 2: "wechat", 3: "voice", 4: "core", 5: "delivery",
               6: "wiring", 7: "adapters", 8: "the public API"}
# Third-party packages a layer must not import: the core and below know no web framework.
FORBIDDEN_BELOW_ADAPTERS = ("flask", "werkzeug", "gunicorn")


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package at ``root``."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, resolved to the package's own modules or, for
    third-party imports, to the top-level name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        else:
            continue
        for target in targets:
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            found.append((target, node.lineno))
    return found


def layer(name: str) -> int | None:
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    return None


def graph(root: Path) -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    modules = module_names(root)
    return modules, {name: imports_of(name, path, modules) for name, path in modules.items()}


def upward_imports(root: Path) -> list[str]:
    modules, edges = graph(root)
    problems = []
    for name, targets in sorted(edges.items()):
        own = layer(name)
        for target, line in targets:
            where = f"{modules[name].relative_to(root.parent)}:{line}"
            if target in modules and target != name:
                theirs = layer(target)
                if own is None or theirs is None:
                    problems.append(f"{where}: {name} or {target} is in no layer (add it to LAYERS)")
                elif theirs > own:
                    problems.append(f"{where}: {name} ({LAYER_NAMES[own]}) imports {target} ({LAYER_NAMES[theirs]})")
            elif target.split(".")[0] in FORBIDDEN_BELOW_ADAPTERS and own is not None and own < LAYERS["bot.web"]:
                problems.append(f"{where}: {name} ({LAYER_NAMES[own]}) imports {target}: only adapters know the "
                                "web framework")
    return problems


def circles(root: Path) -> list[list[str]]:
    """Every strongly connected group of modules (Tarjan), each a circle of imports."""
    modules, edges = graph(root)
    succ = {n: sorted({t for t, _ in ts if t in modules and t != n}) for n, ts in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(n: str) -> None:
        index[n] = low[n] = len(index)
        stack.append(n)
        on_stack.add(n)
        for m in succ[n]:
            if m not in index:
                visit(m)
                low[n] = min(low[n], low[m])
            elif m in on_stack:
                low[n] = min(low[n], index[m])
        if low[n] == index[n]:
            group = []
            while True:
                m = stack.pop()
                on_stack.discard(m)
                group.append(m)
                if m == n:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for n in sorted(succ):
        if n not in index:
            visit(n)
    return found


def describe(root: Path, group: list[str]) -> str:
    modules, edges = graph(root)
    members = set(group)
    links = dict.fromkeys(f"{modules[n].relative_to(root.parent)}:{line} imports {t}"
                          for n in group for t, line in edges[n] if t in members and t != n)
    return "circle: " + "; ".join(links)


def test_no_import_points_up_a_layer() -> None:
    problems = upward_imports(BOT)
    assert not problems, "imports that point up a layer:\n" + "\n".join(problems)


def test_no_import_circles() -> None:
    found = circles(BOT)
    assert not found, "\n".join(describe(BOT, group) for group in found)


def test_every_package_says_what_it_is_and_what_it_may_import() -> None:
    for init in BOT.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert doc, f"{init.relative_to(BOT.parent)} has no docstring"
        if init.parent != BOT and init.parent.name in {"core", "delivery", "voice", "web", "cli", "ops"}:
            assert "import" in doc, f"{init.relative_to(BOT.parent)} does not say what it may import"


@pytest.fixture
def fake_bot(tmp_path: Path) -> Path:
    """A miniature ``bot`` package laid out like the real one, clean to begin with."""
    root = tmp_path / "bot"
    for package in ("", "core", "delivery", "store"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text('"""A package."""\n')
    (root / "config.py").write_text("X = 1\n")
    (root / "core" / "webhook.py").write_text("from bot.config import X\n")
    (root / "delivery" / "engine.py").write_text("from bot.core.webhook import X\n")
    (root / "store" / "base.py").write_text("import json\n")
    return root


def test_the_checks_pass_a_clean_tree(fake_bot: Path) -> None:
    assert upward_imports(fake_bot) == [] and circles(fake_bot) == []


def test_an_upward_import_inside_a_function_is_caught(fake_bot: Path) -> None:
    (fake_bot / "core" / "webhook.py").write_text("from bot.config import X\n\ndef f():\n"
                                                  "    from ..delivery.engine import X\n")
    problems = upward_imports(fake_bot)
    assert problems == ["bot/core/webhook.py:4: bot.core.webhook (core) imports bot.delivery.engine (delivery)"]


def test_a_store_importing_the_core_is_caught(fake_bot: Path) -> None:
    (fake_bot / "store" / "base.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                "    from bot.core import webhook\n")
    assert upward_imports(fake_bot) == ["bot/store/base.py:3: bot.store.base (store) imports bot.core.webhook (core)"]


def test_the_core_importing_flask_is_caught(fake_bot: Path) -> None:
    (fake_bot / "core" / "webhook.py").write_text("from flask import request\n")
    assert upward_imports(fake_bot) == ["bot/core/webhook.py:1: bot.core.webhook (core) imports flask: only "
                                        "adapters know the web framework"]


def test_a_lazy_import_that_closes_a_circle_is_caught(fake_bot: Path) -> None:
    (fake_bot / "core" / "router.py").write_text("def f():\n    from bot.core.webhook import X\n")
    (fake_bot / "core" / "webhook.py").write_text("from bot.core import router\n")
    found = circles(fake_bot)
    assert found == [["bot.core.router", "bot.core.webhook"]]
    assert describe(fake_bot, found[0]) == ("circle: bot/core/router.py:2 imports bot.core.webhook; "
                                            "bot/core/webhook.py:1 imports bot.core.router")
