"""Three rules that keep delivery readable, checked on the source (each check is shown to catch a violation):

- only ``bot/delivery/states.py`` writes delivery records (the state table is the whole story of a record);
- core and delivery read time from the injected clock: no ``time.time()``, ``time.monotonic()`` or
  ``time.sleep()`` (a fake clock must be able to play a message's whole life);
- delivery starts no thread of its own outside its runtime (``bot/delivery/background.py``).

And the README's delivery diagram is the state table's.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bot.delivery.states import MOVES

BOT = Path(__file__).resolve().parent.parent / "bot"
README = Path(__file__).resolve().parent.parent / "README.md"
WRITES = {"add", "add_peeking", "set", "compare_and_set", "compare_and_delete", "delete", "incr"}
CLOCK_CALLS = {"time", "monotonic", "sleep"}


def _names_a_record(node: ast.expr) -> bool:
    """Whether an expression builds a delivery record's key: ``….rkey(…)`` or a string starting ``dl:``."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == "rkey":
            return True
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value.startswith("dl:"):
            return True
    return False


def record_writes(root: Path, allowed: str = "delivery/states.py") -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).as_posix() == allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES
                    and node.args and _names_a_record(node.args[0])):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {node.func.attr}() of a delivery record")
    return found


def clock_bypasses(root: Path) -> list[str]:
    found = []
    for package in ("core", "delivery"):
        for path in sorted((root / package).rglob("*.py")):
            where = path.relative_to(root.parent)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Attribute) and node.attr in CLOCK_CALLS and isinstance(node.value, ast.Name)
                        and node.value.id == "time"):
                    found.append(f"{where}:{node.lineno}: time.{node.attr} (use the injected clock)")
                elif isinstance(node, ast.ImportFrom) and node.module == "time":
                    names = [a.name for a in node.names if a.name in CLOCK_CALLS]
                    if names:
                        found.append(f"{where}:{node.lineno}: from time import {', '.join(names)}")
    return found


def stray_threads(root: Path, allowed: str = "delivery/background.py") -> list[str]:
    found = []
    for path in sorted((root / "delivery").rglob("*.py")):
        if path.relative_to(root).as_posix() == allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("Thread", "Timer") and \
                    isinstance(node.value, ast.Name) and node.value.id == "threading":
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}: threading.{node.attr}")
    return found


def test_only_the_state_module_writes_delivery_records() -> None:
    assert record_writes(BOT) == []


def test_core_and_delivery_take_time_from_the_injected_clock() -> None:
    assert clock_bypasses(BOT) == []


def test_delivery_starts_threads_only_in_its_runtime() -> None:
    assert stray_threads(BOT) == []


@pytest.fixture
def fake_bot(tmp_path: Path) -> Path:
    root = tmp_path / "bot"
    for package in ("core", "delivery"):
        (root / package).mkdir(parents=True)
    (root / "delivery" / "states.py").write_text("def claim(self, key):\n    self.store.add(self.rkey(key), 'x')\n")
    (root / "delivery" / "background.py").write_text("import threading\nthreading.Thread(target=print)\n")
    (root / "core" / "pipeline.py").write_text("import time\nstarted = time.perf_counter()\n")
    return root


def test_the_rules_pass_a_clean_tree(fake_bot: Path) -> None:
    assert record_writes(fake_bot) == [] and clock_bypasses(fake_bot) == [] and stray_threads(fake_bot) == []


def test_a_record_written_outside_the_state_module_is_caught(fake_bot: Path) -> None:
    (fake_bot / "delivery" / "pickup.py").write_text(
        "def undo(self, key, raw):\n    self.store.compare_and_set(self.states.rkey(key), raw, 'x')\n"
        "def purge(store, key):\n    store.delete(f'dl:{key}')\n")
    assert record_writes(fake_bot) == ["bot/delivery/pickup.py:2: compare_and_set() of a delivery record",
                                       "bot/delivery/pickup.py:4: delete() of a delivery record"]


def test_reading_the_system_clock_in_delivery_is_caught(fake_bot: Path) -> None:
    (fake_bot / "delivery" / "late.py").write_text("import time\nfrom time import sleep\nnow = time.time()\n"
                                                   "deadline = time.monotonic() + 1\n")
    assert clock_bypasses(fake_bot) == ["bot/delivery/late.py:2: from time import sleep",
                                        "bot/delivery/late.py:3: time.time (use the injected clock)",
                                        "bot/delivery/late.py:4: time.monotonic (use the injected clock)"]


def test_a_thread_per_answer_is_caught(fake_bot: Path) -> None:
    (fake_bot / "delivery" / "answer.py").write_text("import threading\nthreading.Thread(target=print).start()\n")
    assert stray_threads(fake_bot) == ["bot/delivery/answer.py:2: threading.Thread"]


def diagram_edges(text: str) -> set[tuple[str, str, str]]:
    """``(source, target, move)`` of the mermaid state diagram in the README's Delivery section."""
    block = re.search(r"```mermaid\nstateDiagram-v2\n(.*?)```", text, re.S)
    assert block, "README has no delivery state diagram"
    edges = set()
    for line in block.group(1).splitlines():
        m = re.fullmatch(r"\s*(\[\*\]|\w+) --> (\[\*\]|\w+) : (.+)", line)
        if m:
            edges.update((m.group(1), m.group(2), name.strip()) for name in m.group(3).split(","))
    return edges


def table_edges() -> set[tuple[str, str, str]]:
    def name(state: object) -> str:
        return "[*]" if state is None else str(state)
    return {(name(source), name(target), move.name) for move in MOVES.values() for source, target in move.edges()}


def test_the_readme_diagram_is_the_state_table() -> None:
    """Every move of bot/delivery/states.py is drawn, and nothing else is (README "Delivery")."""
    assert diagram_edges(README.read_text(encoding="utf-8")) == table_edges()
