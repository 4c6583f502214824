"""Plugin discovery for real: a handler package built and installed by pip, enabled in the config by name.

The package is the README's recipe ("Writing, testing and publishing a handler package"): a pyproject with
an entry point in ``wechat_voicebot.routers``. pip builds it with the setuptools of this venv (offline:
``--no-build-isolation --no-deps --no-index``) and installs it with ``--target`` into a temporary directory
that the test puts on ``sys.path``: importlib.metadata finds the installed ``.dist-info`` there exactly as in
site-packages, and the shared venv is never changed.
"""
from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from bot import ConfigError
from bot.config.sections import refresh
from bot.core.loading import PLUGIN_GROUP, load_router
from bot.core.webhook import Webhook
from bot.testing import BotClient, test_config

PYPROJECT = """\
[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "wvb-test-myplugin"
version = "0.1.0"

[project.entry-points."wechat_voicebot.routers"]
myplugin = "myplugin:router"
myfactory = "myplugin:make_router"

[project.entry-points."wechat_voicebot.config"]
weather = "myplugin:SECTION"

[tool.setuptools]
py-modules = ["myplugin"]
"""

MODULE = '''\
from dataclasses import dataclass, field

from bot import Context, Router
from bot.config import ConfigError, Section

router = Router("myplugin")


@dataclass(frozen=True)
class WeatherConfig:
    city: str = "上海"
    days: int = 1
    api_key: str = field(default="", repr=False)


def check_weather(weather, config):
    if not 1 <= weather.days <= 7:
        raise ConfigError(f"[weather] days: expected 1 to 7, got {weather.days}")


SECTION = Section(WeatherConfig, check_weather, env={"WEATHER_API_KEY": "api_key"})


@router.intent(r"^天气$")
def forecast(ctx: Context) -> str:
    return f"{ctx.config.weather.city}：{ctx.config.weather.days}天预报"


@router.intent(r"^plugin (?P<word>\\w+)$")
def hello(ctx: Context, word: str) -> str:
    return f"plugin says {word}"


def make_router() -> Router:
    made = Router("made")
    made.fallback(lambda ctx: "made by the factory")
    return made
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    source, target = tmp_path_factory.mktemp("myplugin-src"), tmp_path_factory.mktemp("myplugin-site")
    (source / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (source / "myplugin.py").write_text(MODULE, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(target.glob("wvb_test_myplugin-0.1.0.dist-info/entry_points.txt"))
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    refresh()
    yield target
    sys.path.remove(str(target))
    sys.modules.pop("myplugin", None)
    importlib.invalidate_caches()
    refresh()


def test_entry_points_are_visible(installed: Path) -> None:
    names = {ep.name: ep.value for ep in entry_points(group=PLUGIN_GROUP)}
    assert names["myplugin"] == "myplugin:router" and names["myfactory"] == "myplugin:make_router"


def test_config_loads_the_plugin_by_name(installed: Path) -> None:
    client = BotClient(Webhook(test_config(handlers={"routers": ["myplugin", "handlers.echo:router"]})))
    assert client.text("plugin works").content == "plugin says works"
    assert client.voice(recognition="plugin speaks.").content == "plugin says speaks"
    assert client.text("anything else").content == "anything else"


def test_a_factory_entry_point(installed: Path) -> None:
    assert load_router("myfactory").name == "made"
    assert BotClient(Webhook(test_config(handlers={"routers": ["myfactory"]}))).text("x").content == \
        "made by the factory"


def test_the_wechat_client_fixture_tests_a_plugin(installed: Path, wechat_client) -> None:
    import myplugin
    assert wechat_client(myplugin.router).text("plugin fixture").content == "plugin says fixture"


def test_a_package_declares_its_own_config_section(installed: Path) -> None:
    from bot.config import config_from_dict
    from bot.config.sections import refresh
    from bot.ops.logs import RedactFilter, config_secrets
    refresh()
    cfg = test_config(handlers={"routers": ["myplugin"]}, weather={"city": "北京", "days": 3})
    assert BotClient(Webhook(cfg)).text("天气").content == "北京：3天预报"
    assert test_config().weather.days == 1  # absent: the schema's defaults
    for bad, error in (({"city": 3}, "[weather] city: expected a string, got 3"),
                       ({"days": 9}, "[weather] days: expected 1 to 7, got 9"),
                       ({"town": "x"}, "[weather] town: unknown key (expected one of: city, days, api_key)")):
        with pytest.raises(ConfigError) as raised:
            test_config(weather=bad)
        assert str(raised.value) == error
    secret = "weather-key-123456"
    keyed = config_from_dict({"wechat": {"appid": "a", "appsecret": "s", "token": "t"}}, env={"WEATHER_API_KEY": secret})
    assert keyed.weather.api_key == secret and secret not in repr(keyed)
    assert secret not in RedactFilter(config_secrets(keyed)).redact(f"calling with {secret}")


def test_a_section_nobody_declares_is_still_an_error(installed: Path) -> None:
    with pytest.raises(ConfigError, match=r"^\[climate\]: unknown section \(expected one of: .*weather.*\)"):
        test_config(climate={"city": "x"})


def test_unknown_plugin_name_stops_start_up(installed: Path) -> None:
    with pytest.raises(ConfigError, match=r"^\[handlers\] routers\[0\]: 'notinstalled' is neither 'module:attribute' "
                                          r"nor an installed plugin \(entry point group 'wechat_voicebot.routers'\)$"):
        Webhook(test_config(handlers={"routers": ["notinstalled"]}))
