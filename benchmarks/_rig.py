"""The delivery benchmarks' rig (``benchmarks/delivery.py``, its ``--pickup`` and ``--overload`` runs): the WeChat
API sandbox in its own process, a bot config, gunicorn from ``gunicorn.conf.py``, and what the runs read back
(process memory and CPU, the SQLite store's open records, the delivery records of given messages).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [p for p in (str(REPO), str(BENCH_DIR)) if p not in sys.path]

from _servers import gunicorn_settings  # noqa: E402

from bot.testing.net import free_port, wait_until_up  # noqa: E402

APPID, SECRET, TOKEN = "wxbenchdelivery01", "bench-secret", "bench-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SENTENCES = [f"第{i}号房间的灯" for i in range(50)]
NOTICE = "回答还在准备中，稍后发任意消息即可收到。"  # [reply] pickup_notice's default
# Inherited variables that would change the packaged gunicorn settings (gunicorn.conf.py reads them).
GUNICORN_ENV = ("WVB_", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS", "WECHAT_VOICEBOT_CONFIG")

SANDBOX = """
import sys, time
from bot.sandbox import Sandbox
port, latency = int(sys.argv[1]), float(sys.argv[2])
customer_service = sys.argv[5:6] != ["no-customer-service"]
Sandbox(appid=sys.argv[3], appsecret=sys.argv[4], port=port, recognition_latency_s=latency, window_s=30,
        customer_service=customer_service).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    try:
        wait_until_up(url, proc, timeout=timeout, interval=0.1)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


def start_sandbox(latency: float, started: list[subprocess.Popen[bytes]], *,
                  customer_service: bool = True) -> tuple[str, subprocess.Popen[bytes]]:
    """The sandbox in its own process (recognition answers ``latency`` s after each upload); its URL."""
    port = free_port()
    argv = [sys.executable, "-c", SANDBOX, str(port), str(latency), APPID, SECRET]
    if not customer_service:
        argv.append("no-customer-service")  # an account without the API: message/custom/send answers 48001
    sandbox = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    started.append(sandbox)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/sandbox/", sandbox)
    return url, sandbox


def write_config(directory: Path, sandbox_url: str, *, routers: str = "handlers.echo:router",
                 search_paths: list[str] | None = None, threads: int | None = None, log_level: str | None = None,
                 poll_initial: float | None = None, poll_max: float | None = None) -> Path:
    """The bot's config: safe mode on the sandbox, a SQLite store in ``directory``; ``None`` keeps a default."""
    handlers_extra = f"search_paths = {json.dumps(search_paths)}\n" if search_paths else ""
    voice_extra = "".join(f"{k} = {v}\n" for k, v in (("poll_initial_s", poll_initial),
                                                        ("poll_max_s", poll_max)) if v is not None)
    reply = f"\n[reply]\nthreads = {threads}\n" if threads is not None else ""
    logging_ = f'\n[logging]\nlevel = "{log_level}"\n' if log_level is not None else ""
    text = f"""
[wechat]
appid = "{APPID}"
appsecret = "{SECRET}"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
api_base_url = "{sandbox_url}"

[handlers]
routers = ["{routers}"]
{handlers_extra}
[voice]
recognizers = ["wechat"]
window_s = 30.0
{voice_extra}
[storage]
url = "sqlite:///{directory / 'state.db'}"
{reply}{logging_}"""
    path = directory / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float | None:
    """utime + stime of a live process, seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


class Sampler(threading.Thread):
    """Peak VmRSS per gunicorn worker, sampled every 0.2 s while the load runs."""

    def __init__(self, master: int) -> None:
        super().__init__(daemon=True)
        self.master = master
        self.peak: dict[int, int] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.2):
            for pid in children(self.master):
                kb = rss_kb(pid)
                if kb:
                    self.peak[pid] = max(self.peak.get(pid, 0), kb)


def start_gunicorn(workdir: Path, config_path: Path, started: list[subprocess.Popen[bytes]], *,
                   workers: int | None = None, threads: int | None = None) -> tuple[str, subprocess.Popen[bytes]]:
    """gunicorn from the repository's gunicorn.conf.py (the documented deployment), up with every worker.
    ``workers``/``threads`` override its settings (``WEB_CONCURRENCY``/``WVB_THREADS``); ``None`` keeps them."""
    bind = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(GUNICORN_ENV)}
    env.update({"WECHAT_VOICEBOT_CONFIG": str(config_path), "WVB_BIND": bind})
    if workers is not None:
        env["WEB_CONCURRENCY"] = str(workers)
    if threads is not None:
        env["WVB_THREADS"] = str(threads)
    with (workdir / "gunicorn.log").open("wb") as log:
        gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")],
                                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started.append(gunicorn)
    wait_http(f"http://{bind}/healthz", gunicorn)
    expected = workers if workers is not None else int(str(gunicorn_settings(config_path)[0]["workers"]))
    while len(children(gunicorn.pid)) < expected:
        time.sleep(0.1)
    return bind, gunicorn


def stop_all(procs: list[subprocess.Popen[bytes]], workdir: Path, *, keep: bool) -> None:
    """SIGTERM each process group the run started (SIGKILL after 10 s); remove the work directory unless kept."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)


def settle(db: Path, limit_s: float) -> int:
    """Wait until no job in the store is still running (late ones end in a customer-service send), up to
    ``limit_s``; returns how many were still running. Reads the SQLite table directly: the Store interface
    has no scan, on purpose."""
    import sqlite3
    deadline = time.monotonic() + limit_s
    while True:
        with sqlite3.connect(db, timeout=10) as conn:
            rows = conn.execute("SELECT value FROM wvb_kv WHERE key LIKE '%dl:%' AND key NOT LIKE '%:lease'"
                                " AND key NOT LIKE '%:tries' AND expires_at > ?", (time.time(),)).fetchall()
        running = sum(json.loads(v).get("state") in ("running", "sending") for (v,) in rows)
        if running == 0 or time.monotonic() > deadline:
            time.sleep(0.5)  # the send itself
            return running
        time.sleep(0.2)


def records(store_url: str, prefix: str, msg_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The delivery records of ``msg_ids`` (state, via, created, kept: wall clocks written by the bot)."""
    from bot.store import open_store
    out: dict[int, dict[str, Any]] = {}
    with open_store(store_url, prefix=prefix) as store:
        for msg_id in msg_ids:
            raw = store.get(f"dl:m:{msg_id}")
            if raw is not None:
                out[msg_id] = json.loads(raw)
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def rnd(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)
