"""Helpers shared by the delivery tests: scaled WeChat clocks, bots on real sockets, log capture, servers.

WeChat's clock scaled by ``SCALE`` (0.1): a try is dropped at 0.5 s, the budget is 0.45 s, three tries end
at ~1.45 s. Recognition latencies 0.5/4/7/12/20 s become 0.05/0.4/0.7/1.2/2.0 s.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from conftest import BASE_CONFIG, REPO, Server, free_port, merge, wait_healthy
from werkzeug.serving import make_server

from bot.config import Config, config_from_dict
from bot.core.router import Router
from bot.sandbox import Sandbox
from bot.web.app import create_app

T = TypeVar("T")
SCALE = 0.1
WAIT_S = 5.0 * SCALE
APPID, SECRET = BASE_CONFIG["wechat"]["appid"], BASE_CONFIG["wechat"]["appsecret"]
SENTENCE = "打开客厅的灯"
ANSWER = "已打开客厅的灯"  # what handlers.lights answers to SENTENCE


def problems(seen: Any, mode: str, latency_s: float, scale: float, tries: int = 3) -> list[str]:
    """What is wrong with what a user saw, judged by WeChat's rules rather than by exact timing.

    Strict where correctness is at stake: exactly one answer, and the right one; no try answered ``success``
    while WeChat could still retry (that ends the retries with nothing shown); no answer before the result can
    exist; passive-mode messages never go through customer service. Tolerant of a busy machine: a result may
    come a try later than on an idle one. Passive mode with no answer is judged by the caller (the log line).
    """
    out: list[str] = []
    wait_s, budget_s = 5.0 * scale, budget(scale)
    st, k = seen.statuses, len(seen.statuses)
    if any(x not in ("timeout", "reply", "success") for x in st):
        out.append(f"a try failed: {st}")
    if seen.error_shown:
        out.append("the user was shown WeChat's error")
    early = min(int(latency_s // wait_s), tries - 1) if mode != "customer_service" else 0
    if st[:early] != ["timeout"] * min(early, k):
        out.append(f"answered before the result could exist: {st}")
    if mode == "customer_service":
        if latency_s > budget_s and seen.passive:
            out.append(f"a passive answer before the result could exist: {st}")
    elif st[-1:] == ["success"] and k < tries:
        out.append(f"a try that WeChat would have retried answered success: {st}")
    if seen.passive:
        if st[-1] != "reply" or seen.customer_service:
            out.append(f"passive answer plus more: {st} {seen.customer_service}")
    elif mode == "passive":
        if seen.customer_service:
            out.append("passive mode used the customer-service API")
    if mode == "passive" and seen.answers == [NOTICE] and st[-1:] == ["reply"] and k == tries:
        return out  # missed every try: the notice, the answer kept for pickup (judged by the caller)
    if (seen.passive or mode != "passive") and seen.answers != [ANSWER]:
        out.append(f"answers {seen.answers}, expected exactly [{ANSWER!r}]")
    return out


def budget(scale: float) -> float:
    """4.5 s on WeChat's real clock; 4 s × ``scale`` when scaled, so that the margin left for getting the
    answer back (0.2 s at × 0.2) still covers a busy test process's scheduling jitter."""
    return 4.5 if scale >= 1 else 4.0 * scale


NOTICE = "回答还在准备中，稍后发任意消息即可收到。"  # [reply] pickup_notice's default


def reply_section(mode: str = "auto", scale: float = SCALE, **extra: Any) -> dict[str, Any]:
    """``[reply]`` with WeChat's clocks scaled: timeout 5 s, lease 3 s × ``scale``, and ``budget(scale)``."""
    return {"mode": mode, "budget_s": budget(scale), "wechat_timeout_s": 5.0 * scale, "lease_s": 3.0 * scale,
            "state_ttl_s": 120.0, **extra}


def voice_section(scale: float = SCALE, **extra: Any) -> dict[str, Any]:
    """Only WeChat's recognizer, polled every 0.5 s × ``scale`` at most (first after 0.2 s × ``scale``)."""
    return {"recognizers": ["wechat"], "poll_initial_s": 0.2 * scale, "poll_max_s": 0.5 * scale, **extra}


def sections(sandbox_url: str, *, mode: str = "auto", store: str = "memory://", prefix: str | None = None,
             scale: float = SCALE, reply: dict[str, Any] | None = None, **more: dict[str, Any]) -> dict[str, Any]:
    """Config overrides (for ``conftest.merge``/``write_config_file``) for a bot talking to ``sandbox_url``."""
    storage = {"url": store, **({"prefix": prefix} if prefix else {})}
    return merge({"wechat": {"api_base_url": sandbox_url}, "voice": voice_section(scale), "storage": storage,
                  "reply": reply_section(mode, scale)}, {"reply": reply or {}, **more})


def bot_config(sandbox_url: str, **kw: Any) -> Config:
    return config_from_dict(merge(BASE_CONFIG, sections(sandbox_url, **kw)))


def start_sandbox(latency_s: float = 0.05, **kw: Any) -> Sandbox:
    return Sandbox(appid=APPID, appsecret=SECRET, recognition_latency_s=latency_s, **kw).start()


def openid(tag: str = "u") -> str:
    """A fresh user per scenario, so customer-service records never mix."""
    return f"o{tag}{uuid.uuid4().hex[:20]}"


class LocalBot:
    """``create_app(config)`` on a threaded werkzeug server in this process: real sockets, real timeouts."""

    def __init__(self, config: Config, router: Router | None = None) -> None:
        self.app = create_app(config, router)
        self.webhook = self.app.extensions["wechat_voicebot"]
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}{config.server.path}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def local_bot(config: Config, router: Router | None = None) -> Iterator[LocalBot]:
    bot = LocalBot(config, router)
    try:
        yield bot
    finally:
        bot.stop()


class LogRecorder(logging.Handler):
    """Collects ``bot.*`` records from every thread (the bot logs from request and job threads)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_:
            self.messages.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    def lines(self, needle: str) -> list[str]:
        with self._lock_:
            return [m for m in self.messages if needle in m]


@contextmanager
def recording_logs() -> Iterator[LogRecorder]:
    logger = logging.getLogger("bot")
    recorder, level = LogRecorder(), logger.level
    logger.addHandler(recorder)
    logger.setLevel(logging.INFO)
    try:
        yield recorder
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)


def run_all(calls: list[Callable[[], T]]) -> list[T]:
    """Run every call at once (each simulated WeChat delivery blocks for seconds); results in order."""
    with ThreadPoolExecutor(max(1, len(calls))) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def start_gunicorn_conf(config_path: Path, log_dir: Path, *, workers: int = 2, threads: int = 8,
                        args: tuple[str, ...] = ()) -> Server:
    """gunicorn from the repository's ``gunicorn.conf.py`` (the documented deployment), sized by environment;
    ``args``: more command-line flags (they override the file, e.g. an access log)."""
    port = free_port()
    log_path = log_dir / f"gunicorn-{port}.log"
    env = {**os.environ, "WECHAT_VOICEBOT_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1",
           "WVB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers), "WVB_THREADS": str(threads)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"),
                                 "--graceful-timeout", "2", *args], cwd=str(REPO), env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/wechat", log_path)
    wait_healthy(server)
    return server


def job_owner(store: Any, msg_id: int) -> str | None:
    """Who runs the job of ``msg_id`` now (the ``owner`` of its record), or None."""
    raw = store.get(f"dl:m:{msg_id}")
    return None if raw is None else json.loads(raw).get("owner")


def worker_pids(server: Server) -> list[int]:
    """The gunicorn master's worker processes."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server.proc.pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def start_rq_worker(config_path: Path, log_dir: Path) -> subprocess.Popen[bytes]:
    """``python -m bot worker --config FILE``, the way an operator runs it; ready once it logs its queue."""
    log_path = log_dir / f"rq-worker-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "worker", "--config", str(config_path)],
                                cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.log_path = log_path  # type: ignore[attr-defined]
    if not wait_for(lambda: "Listening on" in log_path.read_text(errors="replace") or proc.poll() is not None, 20):
        raise RuntimeError(f"RQ worker did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
    if proc.poll() is not None:
        raise RuntimeError(f"RQ worker exited {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (RQ: warm shutdown), then SIGKILL the process group we started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
