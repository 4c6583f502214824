"""The issue's "Done when": ``python -m bot run`` (sandbox + bot in one process, from a copy of
config.example.toml) and ``python -m bot simulate`` against it, as a user runs them, in subprocesses."""
from __future__ import annotations

import hashlib
import re
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import REPO, free_port, run_cli, to_toml
from run_support import Run, bot_run

VOICE = "打开客厅的灯"
ANSWER = "已打开客厅的灯"


class Running:
    def __init__(self, run: Run, config: Path, bot: str, sandbox: str, settings: dict[str, Any]) -> None:
        self.run, self.config, self.bot, self.sandbox, self.settings = run, config, bot, sandbox, settings

    def output(self) -> str:
        return self.run.output()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """config.example.toml copied with free ports and state in a temp dir, served by ``python -m bot run``."""
    yield from start_run(tmp_path_factory.mktemp("run"))


def start_run(work: Path, *options: str) -> Iterator[Running]:
    """``python -m bot run [options]`` on a copy of config.example.toml (free ports, state in ``work``)."""
    with (REPO / "config.example.toml").open("rb") as f:
        settings = tomllib.load(f)
    bot_port, sandbox_port = free_port(), free_port()
    for section in (settings["wechat"], settings["voice"]["openai"], settings["voice"]["reply"]["openai"],
                    settings["llm"]):  # every service the example points at the sandbox
        section.update({k: v.replace(":8090", f":{sandbox_port}") for k, v in section.items()
                        if k in ("api_base_url", "url")})
    settings["server"].update(host="127.0.0.1", port=bot_port)
    settings["storage"]["url"] = f"sqlite:///{work / 'state' / 'bot.db'}"
    config = work / "config.toml"
    config.write_text(to_toml(settings), encoding="utf-8")
    with bot_run(config, f"http://127.0.0.1:{bot_port}", *options) as run:
        yield Running(run, config, f"http://127.0.0.1:{bot_port}", f"http://127.0.0.1:{sandbox_port}", settings)
    assert run.proc.returncode is not None


def simulate(running: Running, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("simulate", *args, "--config", str(running.config), cwd=running.config.parent, timeout=30)


def test_run_then_simulate_voice_answers_through_the_sandbox(running: Running) -> None:
    assert f"WeChat API sandbox on {running.sandbox}" in running.output()
    result = simulate(running, "voice", VOICE)
    assert result.returncode == 0, result.stderr
    assert ANSWER in result.stdout
    calls = requests.get(f"{running.sandbox}/sandbox/calls", timeout=5).json()
    seq = [c["api"] for c in calls]
    assert seq[:3] == ["stable_token", "get", "addvoicetorecofortext"], seq
    assert len(seq) > 3 and set(seq[3:]) == {"queryrecoresultfortext"}, seq
    assert all(c["errcode"] == 0 for c in calls)
    assert calls[2]["query"]["voice_id"] == calls[-1]["query"]["voice_id"]
    assert running.settings["wechat"]["appsecret"] not in running.output() + result.stdout + result.stderr
    # the state went where the config said: into the temp dir, not the repository
    assert (running.config.parent / "state" / "bot.db").exists()


def test_run_with_a_retired_recognition_answers_voice_through_the_fallback_at_the_first_try(
        tmp_path: Path) -> None:
    """Issue 19's "Done when": the sandbox plays a retired recognition (``run --recognition-retired``), the example
    config has the fallback (the sandbox's /v1/audio/transcriptions): the answer comes at the first try."""
    runs = start_run(tmp_path, "--recognition-retired")
    retired = next(runs)
    try:
        assert "its voice recognition retired" in retired.output()
        result = simulate(retired, "voice", VOICE)
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(rf"\[ *[0-3]\.\d\ds\] passive: {ANSWER}\n", result.stdout), result.stdout
        assert "1 try: reply" in result.stderr
        calls = requests.get(f"{retired.sandbox}/sandbox/calls", timeout=5).json()
        answers = [c for c in calls if c["api"] == "queryrecoresultfortext"]
        assert len(answers) == 1 and [c["api"] for c in calls][-1] == "transcriptions"
    finally:
        next(runs, None)


def test_a_second_voice_reuses_the_token(running: Running) -> None:
    before = len(requests.get(f"{running.sandbox}/sandbox/calls", timeout=5).json())
    result = simulate(running, "voice", "关闭卧室的灯", "--with-16k")
    assert result.returncode == 0, result.stderr
    assert "已关闭卧室的灯" in result.stdout
    calls = requests.get(f"{running.sandbox}/sandbox/calls", timeout=5).json()[before:]
    assert [c["api"] for c in calls][:2] == ["get", "addvoicetorecofortext"]  # no new token fetch
    # MediaId16K was downloaded: the sandbox numbers media in order and the 16 kHz copy is the last one made
    later = requests.post(f"{running.sandbox}/sandbox/voices", json={"text": "打开厨房的灯"}, timeout=5).json()
    number = lambda media_id: int(media_id[3:].split("_", 1)[0])  # noqa: E731 - "sbx0007_..." -> 7
    assert number(calls[0]["query"]["media_id"]) == number(later["media_id"]) - 1


def test_simulate_voice_refuses_a_format_the_sandbox_cannot_make(running: Running) -> None:
    result = simulate(running, "voice", VOICE, "--format", "speex")
    assert result.returncode == 2 and "invalid choice: 'speex'" in result.stderr


@pytest.mark.parametrize("mode", [None, "plaintext"])
def test_simulate_text_in_safe_and_plaintext_mode(running: Running, mode: str | None) -> None:
    result = simulate(running, "text", VOICE, *(["--mode", mode] if mode else []))
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"\[ *\d+\.\d\ds\] passive: {ANSWER}\n", result.stdout), result.stdout
    assert f"({mode or 'safe'} mode, 1 try: reply;" in result.stderr
    once = simulate(running, "text", VOICE, "--once", *(["--mode", mode] if mode else []))
    assert once.stdout == ANSWER + "\n" and f"({mode or 'safe'} mode, HTTP 200" in once.stderr


def test_handshake_with_a_correct_signature_returns_echostr(running: Running) -> None:
    token = running.settings["wechat"]["token"]
    timestamp, nonce, echostr = str(int(time.time())), "1320562132", "8226354917281345000"
    signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    url = f"{running.bot}{running.settings['server']['path']}"
    r = requests.get(url, params={"signature": signature, "timestamp": timestamp, "nonce": nonce,
                                  "echostr": echostr}, timeout=5)
    assert (r.status_code, r.text) == (200, echostr)
    bad = requests.get(url, params={"signature": "0" * 40, "timestamp": timestamp, "nonce": nonce,
                                    "echostr": echostr}, timeout=5)
    assert bad.status_code == 403 and echostr not in bad.text
