"""The smaller traps of the first hours, round two (issue 22, item 9): a busy sandbox port names every key that
points at it, ``make run PORT=… SANDBOX_PORT=…``, "a list of strings", ``--version``, and ``simulate image``,
``location`` and ``link``. (The environment variables: tests/test_readme_first_hours.py; the SPDX license:
tests/test_packaged.py; the install hint: tests/test_startup_checks.py.)
"""
from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest
import requests
from conftest import REPO, free_port, run_cli, to_toml, write_config_file
from delivery_support import local_bot, start_sandbox
from run_support import bot_run, taken_port

from bot import Router
from bot.cli.common import keys_at, moved
from bot.config import ConfigError, config_from_dict, load_config


def example_config(directory: Path, bot_port: int, sandbox_port: int) -> Path:
    """config.example.toml as a user copies it, with its ports and its store in ``directory``."""
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace("127.0.0.1:8090", f"127.0.0.1:{sandbox_port}").replace("port = 8080", f"port = {bot_port}")
    settings = tomllib.loads(text)
    settings["storage"]["url"] = "sqlite:///state.db"
    path = directory / "config.toml"
    path.write_text(to_toml(settings), encoding="utf-8")
    return path


def test_a_busy_sandbox_port_names_every_key_that_points_at_it(tmp_path: Path) -> None:
    with taken_port() as port:
        result = run_cli("run", "--config", str(example_config(tmp_path, free_port(), port)), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot start the WeChat API sandbox on 127.0.0.1:{port}: the port is already in use, most likely by "
        "another `make run` or `python -m bot serve` still running; stop it, or pass --sandbox-port (make run "
        "SANDBOX_PORT=…), or change the port in [wechat] api_base_url, [voice.openai] url, [voice.reply.openai] url "
        "and [llm] url")


def test_make_run_passes_the_ports() -> None:
    make = ["make", "--no-print-directory", "-n", "run", "PORT=28080", "SANDBOX_PORT=28090"]
    out = subprocess.run(make, cwd=str(REPO), capture_output=True, text=True, timeout=30).stdout
    assert out.splitlines()[-1].endswith("-m bot run --port 28080 --sandbox-port 28090"), out


def test_run_moves_the_sandbox_and_simulate_finds_it(tmp_path: Path) -> None:
    """The example's keys point at a port that stays closed: run --sandbox-port moves all three."""
    bot_port, sandbox_port, configured = free_port(), free_port(), free_port()
    path = example_config(tmp_path, free_port(), configured)
    with bot_run(path, f"http://127.0.0.1:{bot_port}", "--port", str(bot_port), "--sandbox-port",
                 str(sandbox_port)) as run:
        voice = run_cli("simulate", "voice", "打开客厅的灯", "--config", str(path), "--port", str(bot_port),
                        "--sandbox-port", str(sandbox_port), cwd=tmp_path, timeout=60)
        models = requests.get(f"http://127.0.0.1:{sandbox_port}/v1/models", timeout=5)
        started = run.output()
    assert voice.returncode == 0 and voice.stdout.startswith("[") and "passive: 已打开客厅的灯" in voice.stdout, voice
    assert models.status_code == 200  # the chat endpoint [llm] url now points at
    assert f"WeChat API sandbox on http://127.0.0.1:{sandbox_port}" in started
    assert (f"try:  .venv/bin/python -m bot simulate text '打开客厅的灯' --port {bot_port} --sandbox-port "
            f"{sandbox_port}") in started


def test_moving_the_sandbox_moves_every_key_pointing_at_it(tmp_path: Path) -> None:
    config = load_config(example_config(tmp_path, 8080, 8090), env={})
    assert keys_at(config, ("127.0.0.1", 8090)) == ["[wechat] api_base_url", "[voice.openai] url",
                                                    "[voice.reply.openai] url", "[llm] url"]
    there = moved(config, ("127.0.0.1", 8090), 28090)
    assert (there.wechat.api_base_url, there.voice.openai.url, there.voice.reply.openai.url, there.llm.url) == (
        "http://127.0.0.1:28090", "http://127.0.0.1:28090", "http://127.0.0.1:28090", "http://127.0.0.1:28090/v1")
    assert there.server.port == 8080


def test_a_list_is_a_list_of_strings() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"wechat": {"appid": "a", "appsecret": "s", "token": "t"}, "voice": {"recognizers": "push"}})
    assert str(caught.value) == "[voice] recognizers: expected a list of strings, got 'push'"


def test_version() -> None:
    from importlib.metadata import version
    result = run_cli("--version")
    assert (result.returncode, result.stdout) == (0, f"wechat-voicebot {version('wechat-voicebot')}\n")


def test_simulate_sends_an_image_a_location_and_a_link(tmp_path: Path) -> None:
    router = Router("shared")
    router.message("image")(lambda ctx: f"图片 {ctx.message.image} {ctx.message.media_id}")
    router.message("location")(lambda ctx: f"位置 {ctx.message.location} {ctx.message.label} {ctx.message.scale}")
    router.message("link")(lambda ctx: f"链接 {ctx.message.url} {ctx.message.title}")
    with start_sandbox() as sandbox:
        path = write_config_file(tmp_path, wechat={"api_base_url": sandbox.url})
        with local_bot(load_config(path, env={}), router) as bot:
            def simulate(kind: str, content: str) -> str:
                result = run_cli("simulate", kind, content, "--config", str(path), "--url", bot.url, timeout=60)
                assert result.returncode == 0, result.stderr
                return result.stdout.split("passive: ", 1)[1].strip()
            assert simulate("image", "http://example.com/cat.jpg") == "图片 http://example.com/cat.jpg simulated-image"
            assert simulate("location", "31.2304,121.4737 人民广场") == "位置 ('31.2304', '121.4737') 人民广场 15"
            assert simulate("link", "https://example.com/a 一篇文章") == "链接 https://example.com/a 一篇文章"
            wrong = run_cli("simulate", "location", "上海", "--config", str(path), "--url", bot.url)
    assert (wrong.returncode, wrong.stdout) == (2, "")
    assert wrong.stderr.splitlines()[-1] == ("error: location: expected 'LATITUDE,LONGITUDE [label]', e.g. "
                                             "'31.2304,121.4737 人民广场', got '上海'")
