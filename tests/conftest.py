"""Shared fixtures: config files on disk, a real gunicorn serving ``bot.wsgi:app``, the official sample.

Everything runs on loopback with throwaway secrets. The WeChat API base URL points at a closed port
(``127.0.0.1:9``) and storage is ``memory://``, so nothing here needs the sandbox, a store or the network.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.config import ENV_OVERRIDES
from bot.core.router import Router
from bot.testing.net import free_port, wait_until_up

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

BASE_CONFIG: dict[str, Any] = {
    "wechat": {"appid": "wxconftest0000001", "appsecret": "conftest-secret", "token": "conftest-token",
               "encoding_aes_key": AES_KEY, "api_base_url": "http://127.0.0.1:9"},
    "handlers": {"routers": ["handlers.lights:router", "handlers.echo:router"]},
    "storage": {"url": "memory://"},
}


# -- config files ---------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for config files: scalars, lists, nested tables and arrays of tables ([[intents]])."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and not _is_table_array(v)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in data.items() if _is_table_array(v)}
    lines = [f"[{prefix}]"] if prefix and (scalars or not (tables or arrays)) else []
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    out = "\n".join(lines) + ("\n" if lines else "")
    for name, table in tables.items():
        out += "\n" + to_toml(table, f"{prefix}.{name}" if prefix else name)
    for name, items in arrays.items():
        for item in items:
            out += f"\n[[{prefix + '.' if prefix else ''}{name}]]\n"
            out += "".join(f"{k} = {_toml_value(v)}\n" for k, v in item.items())
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def write_config_file(directory: Path, name: str = "config.toml", **sections: dict[str, Any]) -> Path:
    """``BASE_CONFIG`` with ``sections`` merged in (a ``None`` value removes a key) written to ``directory/name``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(to_toml(merge(BASE_CONFIG, sections)), encoding="utf-8")
    return path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config(server={"port": 9000})`` → path of a valid config (in ``tmp_path``) with those changes."""
    def make(name: str = "config.toml", directory: Path | None = None, **sections: dict[str, Any]) -> Path:
        return write_config_file(directory or tmp_path, name, **sections)
    return make


@pytest.fixture(autouse=True)
def _no_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's WECHAT_* variables must not leak into the tests' configs."""
    for var in ENV_OVERRIDES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("WECHAT_VOICEBOT_CONFIG", raising=False)


@pytest.fixture(autouse=True)
def _loggers_restored() -> Iterator[None]:
    """A mounted VoiceBot gives the bot's own loggers their handler (and stops them propagating) and filters the
    servers' request logs, and ``setup_logging`` installs a root handler: put them back after each test, so that
    later tests' caplog sees ``bot.*`` again and no earlier test's handler (another config's redaction) is left."""
    bot, root = logging.getLogger("bot"), logging.getLogger()
    saved = (list(bot.handlers), bot.propagate, bot.level)
    root_handlers = list(root.handlers)
    requests = [logging.getLogger(name) for name in ("werkzeug", "gunicorn.access")]
    filters = [list(lg.filters) for lg in requests]  # only those: werkzeug sets its own level once per process
    yield
    bot.handlers[:], bot.propagate = saved[:2]
    bot.setLevel(saved[2])
    root.handlers[:] = root_handlers + [h for h in root.handlers if h not in root_handlers
                                        and not getattr(h, "_wvb", False)]  # pytest's own, added meanwhile
    for lg, kept in zip(requests, filters):
        lg.filters[:] = kept


# -- handlers that record ---------------------------------------------------------------------------
@pytest.fixture
def recorder() -> SimpleNamespace:
    """A router that answers everything and records each call: ``rec.router``, ``rec.calls``."""
    calls: list[Any] = []
    router = Router("recorder")

    def record(ctx: Any) -> str:
        calls.append(ctx)
        return "recorded"
    router.add(lambda ctx: {}, record, "record everything")
    return SimpleNamespace(router=router, calls=calls)


# -- the official encrypted sample ----------------------------------------------------------------
@pytest.fixture
def official() -> SimpleNamespace:
    """Tencent's WXBizMsgCrypt sample: keys, query and both envelope bodies (see fixtures/README in shared)."""
    query = {"signature": "ignored-in-aes-mode", "timestamp": "1409735669", "nonce": "1320562132",
             "encrypt_type": "aes", "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa"}
    return SimpleNamespace(
        token="spamtest", aes_key=AES_KEY, appid="wx2c2769f8efd9abc2", timestamp=1409735669,
        nonce="1320562132", msg_signature="5d197aaffba7e9b25a30732f161a50dee96bd5fa", query=query,
        compatible=(FIXTURES / "encrypted_envelope_compat_official_sample.xml").read_bytes(),
        safe=(FIXTURES / "encrypted_envelope_safe_official_sample.xml").read_bytes(),
        content="abcdteT", msg_id="6054768590064713728", openid="oyORnuP8q7ou2gfYjqLzSIWZf0rs",
        account="gh_10f6c3c3ac5a")


# -- real servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A server subprocess on loopback: ``base`` (http://127.0.0.1:port), ``url`` (the callback) and its log."""

    proc: subprocess.Popen[bytes]
    base: str
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log().splitlines() if needle in line]

    def wait_for_log(self, needle: str, count: int, timeout: float = 5.0) -> list[str]:
        """Log lines containing ``needle`` once there are at least ``count`` of them (workers write async)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines(needle)
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the gunicorn master stops its workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what we started
                self.proc.wait(timeout=5)


def wait_healthy(server: Server, timeout: float = 20.0) -> None:
    try:
        wait_until_up(f"{server.base}/healthz", server.proc, timeout=timeout, ok=lambda status: status == 200)
    except RuntimeError as exc:
        server.stop()
        raise RuntimeError(f"{exc}:\n{server.log()[-3000:]}") from None


def start_gunicorn(config_path: Path, log_dir: Path, *, cwd: Path | None = None, workers: int = 2,
                   threads: int = 4, path: str = "/wechat") -> Server:
    """``gunicorn -w 2 --worker-class gthread --threads 4 bot.wsgi:app`` on a free loopback port."""
    port = free_port()
    log_path = log_dir / f"gunicorn-{port}.log"
    env = {k: v for k, v in os.environ.items() if k not in ENV_OVERRIDES}
    env["WECHAT_VOICEBOT_CONFIG"] = str(config_path)
    env["PYTHONUNBUFFERED"] = "1"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "--worker-class", "gthread", "--threads", str(threads), "--timeout", "30",
             "--graceful-timeout", "2", "bot.wsgi:app"],
            cwd=str(cwd or REPO), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}{path}", log_path)
    wait_healthy(server)
    return server


@pytest.fixture(scope="session")
def gunicorn_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config the shared gunicorn serves (lights + echo, safe mode available)."""
    return write_config_file(tmp_path_factory.mktemp("gunicorn"))


@pytest.fixture(scope="session")
def gunicorn_server(gunicorn_config: Path) -> Iterator[Server]:
    """One gunicorn (2 gthread workers × 4 threads) for the whole session, serving ``bot.wsgi:app``."""
    server = start_gunicorn(gunicorn_config, gunicorn_config.parent)
    yield server
    server.stop()


@pytest.fixture
def gunicorn_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start extra gunicorns (own config, own cwd); each is stopped after the test."""
    started: list[Server] = []

    def start(config_path: Path, **kw: Any) -> Server:
        server = start_gunicorn(config_path, tmp_path, **kw)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 30.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` in a subprocess, the way a user runs it."""
    base_env = {k: v for k, v in os.environ.items() if k not in ENV_OVERRIDES}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=str(cwd or REPO), capture_output=True,
                          text=True, timeout=timeout, env={**base_env, **(env or {})})
