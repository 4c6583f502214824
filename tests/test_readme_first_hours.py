"""What the README tells a new user agrees with the code (issue 22, items 7 and 9)."""
from __future__ import annotations

import re
import tomllib

from conftest import REPO

from bot.config import ENV_OVERRIDES
from bot.config.sections import declared_sections

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_handler_examples_never_name_a_module_bot_or_handlers() -> None:
    """A user who copies the examples must not create a file that hides the framework's packages."""
    for block in re.findall(r"```python\n(.*?)```", README, re.S):
        first = block.splitlines()[0]
        assert not re.match(r"#\s*(bot|handlers)(\.py|/)", first), first
        assert not re.search(r"^from (bot|handlers) import router\b", block, re.M), block
    for routers in re.findall(r'^routers = \[(.*?)\]', README, re.M):
        for spec in re.findall(r'"([^"]+)"', routers):
            assert spec.split(":")[0].split(".")[0] not in ("bot",) and (
                not spec.startswith("handlers") or spec.split(":")[0] in BUILT_IN), spec
    assert "anything but `bot` and `handlers`" in README and "Call the module `myhandlers.py`" in README


BUILT_IN = {f"handlers.{p.stem}" for p in (REPO / "handlers").iterdir() if p.suffix == ".py" or p.is_dir()}


def test_readme_and_config_example_list_the_same_secret_environment_variables() -> None:
    config_head = (REPO / "config.example.toml").read_text(encoding="utf-8").split("\n[wechat]\n")[0]
    in_example = set(re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", config_head)) - {"TOML"}
    section = README[README.index("## Configuration"):README.index("## Writing a handler")]
    in_readme = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section.split("Secrets may come from the environment")[1]
                               .split("An error in such a value")[0]))
    every = set(ENV_OVERRIDES) | {var for section in declared_sections().values() for var in section.env}
    assert in_example == in_readme == every, (in_example, in_readme, every)
    tomllib.loads((REPO / "config.example.toml").read_text(encoding="utf-8"))  # still valid TOML
