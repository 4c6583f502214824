"""The shipped example handlers, and handler modules that live outside the repository."""
from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import ConfigError, Router, load_config
from bot.core.loading import load_router, load_routers
from bot.core.webhook import Webhook
from bot.testing import BotClient, test_config
from handlers import echo, lights


@pytest.fixture(params=["plaintext", "safe"])
def home(request, wechat_client) -> BotClient:
    """lights first, then echo: the order config.example.toml uses."""
    return wechat_client(lights.router, echo.router, mode=request.param)


# -- handlers/lights.py -----------------------------------------------------------------------------
@pytest.mark.parametrize("said, answer", [
    ("打开客厅的灯", "已打开客厅的灯"),
    ("关闭卧室的灯", "已关闭卧室的灯"),
    ("请帮我关掉厨房的灯，谢谢", "已关闭厨房的灯"),
    ("开书房灯", "已打开书房的灯"),
    ("打开卫生间灯", "已打开卫生间的灯"),
])
def test_lights_text(home: BotClient, said: str, answer: str) -> None:
    assert home.text(said).content == answer


@pytest.mark.parametrize("recognition, answer", [
    ("打开客厅的灯。", "已打开客厅的灯"),
    ("关掉书房的灯！", "已关闭书房的灯"),
])
def test_lights_voice_with_recognition(home: BotClient, recognition: str, answer: str) -> None:
    assert home.voice(recognition=recognition).content == answer


def help_line(room: str, line: str | None) -> bool:
    assert line is not None and line.startswith(f"没有找到“{room}”，可以说：") and line.endswith("。"), line
    listed = line.split("：", 1)[1].rstrip("。").split("、")
    return sorted(listed) == sorted(["书房", "卧室", "厨房", "卫生间", "客厅"])


def test_lights_unknown_room_gets_help(home: BotClient) -> None:
    assert help_line("阳台", home.text("打开阳台的灯").content)
    assert help_line("车库", home.voice(recognition="关闭车库的灯").content)


@pytest.mark.parametrize("said, answer", [
    ("turn on the kitchen lights", "Turned on the kitchen lights"),
    ("Please TURN OFF the bedroom light", "Turned OFF the bedroom lights"),
])
def test_lights_english(home: BotClient, said: str, answer: str) -> None:
    assert home.text(said).content == answer
    assert home.voice(recognition=said).content == answer


def test_not_a_lights_command_falls_through_to_echo(home: BotClient) -> None:
    assert home.text("今天天气怎么样").content == "今天天气怎么样"
    assert home.voice(recognition="hello there").content == "hello there"
    assert home.event("subscribe").content == "欢迎关注！发一段语音或文字试试。"


def test_echo_says_nothing_for_what_has_no_text(wechat_client) -> None:
    client = wechat_client(echo.router)
    assert client.event("unsubscribe").is_success
    from bot.testing import messages
    assert client.send(messages.image()).is_success


def test_lights_handler_called_directly() -> None:
    """Handlers are plain functions: callable without any of the machinery."""
    assert lights.lights(None, action="开", room="客厅") == "已打开客厅的灯"  # type: ignore[arg-type]
    assert lights.lights(None, action="关掉", room="厨房") == "已关闭厨房的灯"  # type: ignore[arg-type]


# -- a handler module outside the repository ----------------------------------------------------------
MODULE = textwrap.dedent('''
    """Someone's own handlers, next to their config, far from the framework's repository."""
    from bot import Context, Router

    router = Router("mine")

    @router.intent(r"^ping (?P<what>.+)$")
    def ping(ctx: Context, what: str) -> str:
        return f"pong {what} from {__name__}"

    def make_router() -> Router:
        r = Router("factory")
        r.text(lambda ctx: "made by a factory")
        return r

    NOT_A_ROUTER = 42
''')


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``myhandlers.py`` and a config naming it, in a directory that is not the repo (nor on sys.path)."""
    project = tmp_path / "my-bot"
    project.mkdir()
    (project / "myhandlers.py").write_text(MODULE, encoding="utf-8")
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_routers extends sys.path: undo it afterwards
    yield project
    sys.modules.pop("myhandlers", None)


def write_outside_config(project: Path, routers: list[str], write_config) -> Path:
    return write_config(directory=project, handlers={"routers": routers, "search_paths": ["."]})


def test_module_outside_repo_in_process(outside: Path, write_config, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # search_paths are relative to the config file, not the cwd
    cfg = load_config(write_outside_config(outside, ["myhandlers:router", "handlers.echo:router"], write_config))
    with pytest.raises(ImportError):
        __import__("myhandlers")  # not importable before the config's search paths are applied
    client = BotClient(Webhook(cfg))
    assert client.text("ping 42").content == "pong 42 from myhandlers"
    assert client.text("echo me").content == "echo me"
    assert str(outside.resolve()) in sys.path


def test_module_outside_repo_factory(outside: Path, write_config) -> None:
    cfg = load_config(write_outside_config(outside, ["myhandlers:make_router"], write_config))
    routers = load_routers(cfg)
    assert [r.name for r in routers] == ["factory"]
    assert BotClient(Webhook(cfg)).text("anything").content == "made by a factory"


@pytest.mark.parametrize("spec, message", [
    ("myhandlers:nope", "module 'myhandlers' has no attribute 'nope'"),
    ("myhandlers:NOT_A_ROUTER", "is a int, expected a bot.Router"),
    ("no_such_module_xyz:router", "cannot import module 'no_such_module_xyz'"),
    ("no_such_plugin", "neither 'module:attribute' nor an installed plugin"),
])
def test_bad_router_spec(outside: Path, write_config, spec: str, message: str) -> None:
    cfg = load_config(write_outside_config(outside, [spec, "handlers.echo:router"], write_config))
    with pytest.raises(ConfigError) as info:
        Webhook(cfg)
    assert str(info.value).startswith("[handlers] routers[0]: ")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_router_spec_rejected_at_load(outside: Path, write_config) -> None:
    with pytest.raises(ConfigError, match=r"^\[handlers\] routers\[0\]: expected 'module:attribute'"):
        load_config(write_outside_config(outside, ["my handlers!"], write_config))


def test_load_router_accepts_router_objects_only() -> None:
    assert isinstance(load_router("handlers.lights:router"), Router)
    with pytest.raises(ConfigError, match="where: .* expected a bot.Router"):
        load_router("handlers.lights:ROOMS", where="where")


def test_module_outside_repo_through_gunicorn(outside: Path, write_config, gunicorn_factory,
                                              tmp_path: Path) -> None:
    elsewhere = tmp_path / "some-other-cwd"
    elsewhere.mkdir()
    config_path = write_outside_config(outside, ["myhandlers:router", "handlers.lights:router"], write_config)
    server = gunicorn_factory(config_path, cwd=elsewhere)
    cfg = load_config(config_path, env={})
    for mode in ("plaintext", "safe"):
        client = BotClient(cfg, url=server.url, mode=mode)
        assert client.text("ping gunicorn").content == "pong gunicorn from myhandlers"
        assert client.text("打开厨房的灯").content == "已打开厨房的灯"
        assert client.text("nobody answers this").is_success


def test_default_test_config_has_no_routers(wechat_client) -> None:
    assert wechat_client(lights.router).config.handlers.routers == []


def test_routers_from_config_when_none_given(wechat_client) -> None:
    """``wechat_client()`` without routers loads the config's; the default test config has none."""
    client = wechat_client(config=test_config(handlers={"routers": ["handlers.lights:router"]}))
    assert client.text("打开客厅的灯").content == "已打开客厅的灯"
    assert wechat_client().text("打开客厅的灯").is_success
