"""``python -m bot``, run as a user runs it (a subprocess), against a real gunicorn."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import REPO, Server, free_port, run_cli

from bot.cli.commands import main


def passive(text: str) -> re.Pattern[str]:
    """simulate's line for a passive reply the user reads: ``[ 0.03s] passive: <text>``."""
    return re.compile(rf"\[ *\d+\.\d\ds\] passive: {re.escape(text)}\n")


def test_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "run", "simulate", "sandbox"):
        assert command in result.stdout
    assert "gunicorn" in result.stdout  # the epilog points at production
    simulate = run_cli("simulate", "--help")
    assert simulate.returncode == 0 and "--url" in simulate.stdout and "--mode" in simulate.stdout


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2 and "usage: python -m bot" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["plaintext", "safe"])
def test_simulate_text_prints_the_echo(gunicorn_server: Server, gunicorn_config: Path, mode: str) -> None:
    result = run_cli("simulate", "text", "你好", "--url", gunicorn_server.url, "--config", str(gunicorn_config),
                     "--mode", mode)
    assert result.returncode == 0, result.stderr
    assert passive("你好").fullmatch(result.stdout), result.stdout
    assert f"({mode} mode, 1 try: reply;" in result.stderr


def test_simulate_defaults_to_safe_mode_and_routes(gunicorn_server: Server, gunicorn_config: Path) -> None:
    result = run_cli("simulate", "text", "打开客厅的灯", "--url", gunicorn_server.url, "--config",
                     str(gunicorn_config))
    assert result.returncode == 0 and passive("已打开客厅的灯").fullmatch(result.stdout)
    assert "(safe mode" in result.stderr


def test_simulate_voice_with_recognition_and_event(gunicorn_server: Server, gunicorn_config: Path) -> None:
    voice = run_cli("simulate", "voice", "ignored sentence", "--recognition", "关闭卧室的灯", "--url",
                    gunicorn_server.url, "--config", str(gunicorn_config))
    assert voice.returncode == 0 and passive("已关闭卧室的灯").fullmatch(voice.stdout)
    event = run_cli("simulate", "event", "subscribe", "--url", gunicorn_server.url, "--config", str(gunicorn_config))
    assert event.returncode == 0 and passive("欢迎关注！发一段语音或文字试试。").fullmatch(event.stdout)


def test_simulate_with_wrong_secrets_exits_1(gunicorn_server: Server, write_config) -> None:
    other = write_config(wechat={"token": "not-the-servers-token"})
    result = run_cli("simulate", "text", "hi", "--url", gunicorn_server.url, "--config", str(other))
    assert result.returncode == 1
    assert result.stdout == "HTTP 403: bad signature\n"


def test_simulate_unreachable_url_exits_2(gunicorn_config: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/wechat"
    started = time.monotonic()
    result = run_cli("simulate", "text", "hi", "--url", url, "--config", str(gunicorn_config))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("wechat-voicebot: config")]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the bot at {url}")
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 15


def test_simulate_url_from_config(gunicorn_server: Server, write_config) -> None:
    """Without --url, simulate posts to the config's [server] host, port and path."""
    port = int(gunicorn_server.base.rsplit(":", 1)[1])
    config = write_config(server={"host": "0.0.0.0", "port": port})  # 0.0.0.0 means "this machine"
    result = run_cli("simulate", "text", "from config", "--config", str(config))
    assert result.returncode == 0 and passive("from config").fullmatch(result.stdout)


def test_simulate_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[wechat]\nappid = "a"\n', encoding="utf-8")
    assert main(["simulate", "text", "x", "--config", str(bad), "--url", "http://127.0.0.1:9/wechat"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["config error: [wechat] appsecret: missing; expected a string"]


def test_simulate_in_process_against_gunicorn(gunicorn_server: Server, gunicorn_config: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "text", "in-process CLI", "--url", gunicorn_server.url, "--config",
                 str(gunicorn_config), "--mode", "compatible"]) == 0
    assert passive("in-process CLI").fullmatch(capsys.readouterr().out)


def test_serve_development_server(write_config, tmp_path: Path) -> None:
    """``python -m bot serve`` answers on the port it prints."""
    port = free_port()
    config = write_config()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--config", str(config), "--port", str(port)],
                            cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    break
            except requests.RequestException:
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.05)
        result = run_cli("simulate", "text", "dev server", "--config", str(config),
                         "--url", f"http://127.0.0.1:{port}/wechat")
        assert result.returncode == 0 and passive("dev server").fullmatch(result.stdout)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    assert f"serving http://127.0.0.1:{port}/wechat" in (tmp_path / "serve.log").read_text()
