"""``serve`` and ``run`` as a user runs them: a port in use is one line, and the output is clean text or JSON
(issue 12, item 6)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests
from conftest import REPO, free_port, run_cli, write_config_file
from run_support import taken_port  # a port something listens on, as a first `make run` would

from bot.config import ENV_OVERRIDES
from bot.testing.net import wait_until_up


def test_serve_on_a_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    config = write_config_file(tmp_path)
    with taken_port() as port:
        result = run_cli("serve", "--config", str(config), "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"wechat-voicebot: config {config}",
        f"error: cannot start the bot on 127.0.0.1:{port}: the port is already in use, most likely by another "
        "`make run` or `python -m bot serve` still running; stop it, or pass --port (or change [server] port)"]


def test_run_twice_is_one_line_for_the_bot_or_the_sandbox_port(tmp_path: Path) -> None:
    with taken_port() as sandbox_port:
        config = write_config_file(tmp_path, wechat={"api_base_url": f"http://127.0.0.1:{sandbox_port}"},
                                   server={"port": free_port()})
        result = run_cli("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "serving" not in result.stderr
    assert result.stderr.splitlines()[1:] == [
        f"error: cannot start the WeChat API sandbox on 127.0.0.1:{sandbox_port}: the port is already in use, most "
        "likely by another `make run` or `python -m bot serve` still running; stop it, or pass --sandbox-port (make "
        "run SANDBOX_PORT=…), or change the port in [wechat] api_base_url"]
    with taken_port() as bot_port:
        config = write_config_file(tmp_path, wechat={"api_base_url": f"http://127.0.0.1:{free_port()}"},
                                   server={"port": bot_port})
        result = run_cli("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 2
    assert f"cannot start the bot on 127.0.0.1:{bot_port}: the port is already in use" in result.stderr


def serve_and_stop(tmp_path: Path, fmt: str) -> tuple[str, str]:
    """``serve`` with ``[logging] format = fmt``: a health check and a refused (403) callback, then Ctrl-C."""
    port = free_port()
    config = write_config_file(tmp_path, logging={"format": fmt})
    env = {k: v for k, v in os.environ.items() if k not in ENV_OVERRIDES} | {"PYTHONUNBUFFERED": "1"}
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--config", str(config), "--port", str(port)],
                                cwd=str(REPO), env=env, stdout=o, stderr=e, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, ok=lambda status: status == 200)
        bad = requests.post(f"http://127.0.0.1:{port}/wechat?signature=x&timestamp=1&nonce=2", data=b"<xml/>",
                            timeout=5)
        assert bad.status_code == 403
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what we started
            proc.wait(timeout=5)
    return out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")


def test_text_logs_have_no_terminal_colour_codes_and_no_banner(tmp_path: Path) -> None:
    stdout, stderr = serve_and_stop(tmp_path, "text")
    assert "\x1b" not in stdout + stderr
    assert "Serving Flask app" not in stdout + stderr and "Debug mode" not in stdout + stderr
    assert '"POST /wechat?signature=x&timestamp=1&nonce=2 HTTP/1.1" 403' in stderr
    assert "wechat-voicebot: serving http://127.0.0.1:" in stderr


def test_json_logs_are_json_lines_only(tmp_path: Path) -> None:
    stdout, stderr = serve_and_stop(tmp_path, "json")
    assert stdout == ""
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # raises on any other line
    messages = [r["message"] for r in records]
    assert any(m.startswith("serving http://127.0.0.1:") for m in messages)
    assert any("403" in m and "\x1b" not in m for m in messages if "POST /wechat" in m)


def test_a_port_in_use_in_json_mode_is_one_json_record(tmp_path: Path) -> None:
    config = write_config_file(tmp_path, logging={"format": "json"})
    with taken_port() as port:
        result = run_cli("serve", "--config", str(config), "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert [r["level"] for r in records] == ["INFO", "ERROR"]
    assert records[1]["message"].startswith(f"cannot start the bot on 127.0.0.1:{port}: the port is already in use")
