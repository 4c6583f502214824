"""The example config's intents and the README's examples agree, and an intent hiding a router's words is one
warning line at start-up (issue 12, item 4)."""
from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, merge, start_gunicorn, to_toml

from bot import Router
from bot.config import config_from_dict, load_config
from bot.core import intents as intents_module
from bot.core.intents import shadowed
from bot.core.webhook import Webhook
from bot.testing import BotClient, test_config

HELP_INTENT = {"name": "help", "patterns": ["(?i)^(?:帮助|help)$"], "reply": "菜单：……"}


def readme_block(marker: str) -> str:
    """The README's Python block that starts with ``marker``."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if b.startswith(marker)]
    assert len(blocks) == 1, f"README.md should have one block starting with {marker!r}"
    return blocks[0]


def example_with(tmp_path: Path, routers: list[str]) -> Path:
    """config.example.toml with other routers (and a memory store), next to the modules in ``tmp_path``."""
    with (REPO / "config.example.toml").open("rb") as f:
        raw = tomllib.load(f)
    raw = merge(raw, {"handlers": {"routers": routers, "search_paths": ["."]}, "storage": {"url": "memory://"}})
    path = tmp_path / "config.toml"
    path.write_text(to_toml(raw), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    intents_module._warned.clear()  # warnings are said once per process; each test wants to hear them


def test_the_readmes_handlers_answer_on_top_of_the_example_config(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "readme_handlers.py").write_text(readme_block("# myhandlers.py"), encoding="utf-8")
    config = load_config(example_with(tmp_path, ["readme_handlers:router", "handlers.echo:router"]), env={})
    caplog.set_level(logging.WARNING, logger="bot.intents")
    client = BotClient(Webhook(config))
    assert not [r.getMessage() for r in caplog.records if r.name == "bot.intents"]
    keyword = re.search(r'@router\.keyword\("([^"]+)"', readme_block("# myhandlers.py")).group(1)
    answer = re.search(r'def \w+\(ctx: Context\) -> str:\n    return "([^"]+)"', readme_block("# myhandlers.py"))
    assert client.text(keyword).content == answer.group(1)
    assert client.text("打开客厅的灯").content == "已打开客厅的灯"
    assert client.event("subscribe").content == "欢迎关注！"


def test_a_weather_package_answers_on_top_of_the_example_config(tmp_path: Path) -> None:
    """The handler-package example (``上海天气`` → ``上海：晴``) is not hidden by a sample intent."""
    (tmp_path / "weather_pkg.py").write_text(
        "from bot import Router\nrouter = Router('weather')\n"
        "@router.intent(r'(?P<city>\\S+?)的?天气')\ndef weather(ctx, city):\n    return f'{city}：晴'\n",
        encoding="utf-8")
    client = BotClient(Webhook(load_config(example_with(tmp_path, ["weather_pkg:router", "handlers.echo:router"]),
                                           env={})))
    assert client.text("上海天气").content == "上海：晴"
    assert client.voice(recognition="上海天气。").content == "上海：晴"


def test_an_intent_hiding_a_keyword_is_one_warning_line_naming_both(caplog: pytest.LogCaptureFixture) -> None:
    router = Router("home")
    router.keyword("帮助", "help")(lambda ctx: "code help")
    router.keyword("价格")(lambda ctx: "price")
    caplog.set_level(logging.WARNING, logger="bot.intents")
    config = test_config(intents=[HELP_INTENT], handlers={"routers": ["handlers.echo:router"]})
    lines = shadowed(config.intents, [("myhandlers:router", router)], config)
    assert lines == ["[[intents]] 'help' answers '帮助' before keyword ('帮助', 'help') <lambda> of myhandlers:router, "
                     "which never sees it (intents run before [handlers] routers): remove or narrow the intent in "
                     "the config"]
    assert "\n" not in lines[0]


def test_start_up_warns_once_per_process(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "helpful.py").write_text("from bot import Router\nrouter = Router('helpful')\n"
                                         "@router.keyword('帮助')\ndef help_(ctx):\n    return 'code help'\n",
                                         encoding="utf-8")
    raw: dict[str, Any] = {"wechat": {"appid": "wxa", "appsecret": "s3cret", "token": "t0ken"},
                           "handlers": {"routers": ["helpful:router"], "search_paths": [str(tmp_path)]},
                           "storage": {"url": "memory://"}, "intents": [HELP_INTENT]}
    caplog.set_level(logging.WARNING, logger="bot.intents")
    for _ in range(2):
        Webhook(config_from_dict(raw))
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.intents"]
    assert len(warnings) == 1 and "'help' answers '帮助' before keyword ('帮助',) help_ of helpful:router" in warnings[0]


@pytest.mark.parametrize("route, hidden", [
    (lambda r: r.intent(r"^帮助$"), True),                 # a pattern that is a plain word
    (lambda r: r.intent(r"(?i)^(?:帮助|help)$"), True),    # the intent's very pattern
    (lambda r: r.intent(r"(?P<city>\S+)天气"), False),      # a regex: overlap cannot be seen
    (lambda r: r.keyword("价格"), False),
    (lambda r: r.keyword("HELP"), True),                   # any case, as matching
])
def test_what_can_be_seen(route: Any, hidden: bool) -> None:
    router = Router("r")
    route(router)(lambda ctx: "x")
    config = test_config(intents=[HELP_INTENT])
    assert bool(shadowed(config.intents, [("r:router", router)], config)) is hidden


def test_the_example_config_warns_about_nothing() -> None:
    config = load_config(REPO / "config.example.toml", env={})
    from bot.core.loading import load_routers
    routers = load_routers(config)[1:]
    assert shadowed(config.intents, list(zip(config.handlers.routers, routers)), config) == []


def test_gunicorn_warns_once_not_once_per_worker(tmp_path: Path) -> None:
    (tmp_path / "helpful.py").write_text("from bot import Router\nrouter = Router('helpful')\n"
                                         "@router.keyword('帮助')\ndef help_(ctx):\n    return 'code help'\n",
                                         encoding="utf-8")
    raw: dict[str, Any] = {"wechat": {"appid": "wxa", "appsecret": "s3cret", "token": "t0ken"},
                           "handlers": {"routers": ["helpful:router"], "search_paths": ["."]},
                           "storage": {"url": "memory://"}, "intents": [HELP_INTENT]}
    path = tmp_path / "config.toml"
    path.write_text(to_toml(raw), encoding="utf-8")
    server = start_gunicorn(path, tmp_path, workers=2)
    try:
        lines = server.wait_for_log("[[intents]] 'help' answers", 2, timeout=2.0)
    finally:
        server.stop()
    assert len(lines) == 1, server.log()
