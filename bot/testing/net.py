"""Loopback helpers shared by the tests, the benchmarks and anyone starting servers in their own tests."""
from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it), for a server started next."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen[bytes] | None = None, *, timeout: float = 20.0,
                  ok: Callable[[int], bool] = lambda status: True, interval: float = 0.05) -> None:
    """Poll ``url`` until it answers (``ok(status)``); raise ``RuntimeError`` if ``proc`` exits first or
    ``timeout`` passes. For tests and benchmarks that start a server in a subprocess."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server process exited with {proc.returncode}")
        try:
            if ok(requests.get(url, timeout=0.5).status_code):
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:g} s")
        time.sleep(interval)
