"""Every entry point refuses the same configs with the same one line, and reads the same file (issue 12, items 1-3).

Each command runs as a user runs it (a subprocess); gunicorn is a real ``gunicorn -c gunicorn.conf.py``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, free_port, run_cli, write_config_file

from bot.config import ENV_OVERRIDES

BROKEN: dict[str, tuple[dict[str, Any], str]] = {
    "rq without redis": ({"reply": {"executor": "rq"}, "storage": {"url": "sqlite:///state.db"}},
                         'config error: [reply] executor: "rq" needs a redis:// (or rediss://) [storage] url, got '
                         'sqlite://; without Redis use executor = "threads"'),
    "budget over WeChat's timeout": ({"reply": {"budget_s": 6.0}},
                                     "config error: [reply] budget_s: expected more than 0 and less than "
                                     "wechat_timeout_s (5), got 6"),
    "aes key not base64": ({"wechat": {"encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCD-_!"}},
                           "config error: [wechat] encoding_aes_key: expected 43 characters of base64 (A-Z, a-z, "
                           "0-9, + and /) as WeChat generates it; copy it again from mp.weixin.qq.com → 设置与开发 → "
                           "基本配置"),
    "postgres store": ({"storage": {"url": "postgres://db/bot"}},  # issue 22: serve died with a traceback
                       "config error: [storage] url: unsupported store URL scheme 'postgres' in 'postgres://db/bot'; "
                       "use one of: memory://, sqlite:///relative/path.db (or sqlite:////absolute/path.db), "
                       "redis://host:port/db"),
    "intent pattern": ({"intents": [{"name": "x", "patterns": ["(unclosed"], "reply": "y"}]},
                       "config error: [[intents]][0] patterns[0]: not a valid regular expression (missing ), "
                       "unterminated subpattern at position 0)"),
}


def broken(tmp_path: Path, name: str) -> tuple[Path, str]:
    sections, line = BROKEN[name]
    return write_config_file(tmp_path, "broken.toml", **sections), line


def command_args(command: str, path: Path) -> list[str]:
    port = str(free_port())
    return {"check": ["check", "--config", str(path)],
            "serve": ["serve", "--config", str(path), "--port", port],
            "run": ["run", "--config", str(path), "--port", port],
            "simulate": ["simulate", "text", "hi", "--config", str(path), "--url", f"http://127.0.0.1:{port}/wechat"],
            "worker": ["worker", "--config", str(path), "--burst"]}[command]


@pytest.mark.parametrize("command", ["check", "serve", "run", "simulate", "worker"])
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_every_command_refuses_what_serve_refuses(tmp_path: Path, command: str, name: str) -> None:
    path, line = broken(tmp_path, name)
    result = run_cli(*command_args(command, path), cwd=tmp_path, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", line + "\n")
    assert not (tmp_path / "state.db").exists()


def gunicorn(tmp_path: Path, config: Path, *extra: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_OVERRIDES}
    env.update(WECHAT_VOICEBOT_CONFIG=str(config), WVB_BIND=f"127.0.0.1:{free_port()}", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"), *extra],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_gunicorn_with_a_broken_config_is_one_line_and_exits_at_once(tmp_path: Path, name: str) -> None:
    path, line = broken(tmp_path, name)
    started = time.monotonic()
    result = gunicorn(tmp_path, path)
    assert time.monotonic() - started < 15
    assert result.returncode == 2
    assert (result.stdout + result.stderr).splitlines() == [line]


def test_gunicorn_with_a_router_it_cannot_import_is_one_line(tmp_path: Path) -> None:
    path = write_config_file(tmp_path, "config.toml", handlers={"routers": ["nosuchmodule_xyz:router"]})
    result = gunicorn(tmp_path, path)
    assert result.returncode == 2
    assert (result.stdout + result.stderr).splitlines() == [
        "config error: [handlers] routers[0]: cannot import module 'nosuchmodule_xyz' (No module named "
        "'nosuchmodule_xyz')"]


def test_gunicorn_without_a_config_names_the_next_step(tmp_path: Path) -> None:
    result = gunicorn(tmp_path, tmp_path / "config.toml")
    assert result.returncode == 2
    assert (result.stdout + result.stderr).splitlines() == [
        f"config error: config file not found: {tmp_path / 'config.toml'} (set WECHAT_VOICEBOT_CONFIG=FILE, or copy "
        "config.example.toml to config.toml and edit it)"]


# -- one rule for which file ------------------------------------------------------------------------------
def test_make_run_leaves_the_choice_to_the_commands_rule() -> None:
    make = ["make", "--no-print-directory", "-n", "run"]  # under `make test`, a sub-make would name its directory
    default = subprocess.run(make, cwd=str(REPO), capture_output=True, text=True, timeout=30)
    assert default.returncode == 0 and default.stdout.splitlines()[-1].split() == [".venv/bin/python", "-m", "bot",
                                                                                    "run"]
    chosen = subprocess.run([*make, "CONFIG=other.toml"], cwd=str(REPO), capture_output=True,
                            text=True, timeout=30)
    assert chosen.stdout.splitlines()[-1].endswith("-m bot run --config other.toml")


def test_commands_use_config_toml_when_present_and_say_so(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/wechat"
    write_config_file(tmp_path, "config.example.toml", storage={"url": "memory://"})
    only_example = run_cli("simulate", "text", "hi", "--once", "--url", url, cwd=tmp_path)
    assert only_example.stderr.splitlines()[0] == ("wechat-voicebot: config config.example.toml (no config.toml "
                                                   "here: the example, which talks to the local sandbox)")
    write_config_file(tmp_path, "config.toml", storage={"url": "memory://"})
    for args, stream in ((["simulate", "text", "hi", "--once", "--url", url], "stderr"), (["check"], "stdout")):
        result = run_cli(*args, cwd=tmp_path)
        assert getattr(result, stream).splitlines()[0] == "wechat-voicebot: config config.toml", result


def test_no_config_file_names_the_next_step(tmp_path: Path) -> None:
    result = run_cli("check", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (f"config error: no config file: neither config.toml nor config.example.toml in "
                             f"{tmp_path} (copy config.example.toml to config.toml and edit it, or pass --config "
                             "FILE)\n")


def test_an_error_in_the_default_file_names_it(tmp_path: Path) -> None:
    write_config_file(tmp_path, "config.toml", voice={"lang": "zh"})
    result = run_cli("check", cwd=tmp_path)
    assert result.stderr == "config error: [voice] lang: expected 'zh_CN' or 'en_US', got 'zh' (in config.toml)\n"


def test_run_serves_config_toml_and_simulate_signs_with_it(tmp_path: Path) -> None:
    """The issue's trap: after "copy to config.toml and edit", simulate got ``HTTP 403: bad signature``."""
    port, sandbox = free_port(), f"http://127.0.0.1:{free_port()}"
    write_config_file(tmp_path, "config.example.toml", server={"port": port}, wechat={"api_base_url": sandbox})
    write_config_file(tmp_path, "config.toml", wechat={"token": "my-own-token", "api_base_url": sandbox},
                      server={"port": port})
    env = {k: v for k, v in os.environ.items() if k not in ENV_OVERRIDES} | {"PYTHONUNBUFFERED": "1"}
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=str(tmp_path), env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from bot.testing.net import wait_until_up
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, ok=lambda status: status == 200)
        result = run_cli("simulate", "text", "打开客厅的灯", "--once", cwd=tmp_path)
        assert (result.returncode, result.stdout) == (0, "已打开客厅的灯\n"), result.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what we started
            proc.wait(timeout=5)
    assert "wechat-voicebot: config config.toml" in log.read_text(encoding="utf-8")
