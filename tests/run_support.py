"""``python -m bot run`` as a user starts it (a subprocess in its own session), for the tests of the first hours."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.config import ENV_OVERRIDES
from bot.testing.net import wait_until_up


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def bot_run(config: Path, bot_url: str, *args: str, cwd: Path | None = None) -> Iterator[Run]:
    """``python -m bot run --config CONFIG ARGS``, up once ``bot_url``/healthz answers; stopped with Ctrl-C."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_OVERRIDES} | {"PYTHONUNBUFFERED": "1"}
    log = config.parent / f"run-{len(list(config.parent.glob('run-*.log')))}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config), *args],
                                cwd=str(cwd or config.parent), env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    run = Run(proc, log)
    try:
        try:
            wait_until_up(f"{bot_url}/healthz", proc, ok=lambda status: status == 200)
        except RuntimeError as exc:
            raise RuntimeError(f"`python -m bot run`: {exc}:\n{run.output()}") from None
        yield run
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    """Ctrl-C (or ``sig``: SIGTERM for gunicorn), then SIGKILL the session we started it in."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what we started
            proc.wait(timeout=5)


@contextmanager
def taken_port() -> Iterator[int]:
    """A port something listens on (and never answers), for as long as the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]
