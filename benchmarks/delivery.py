"""Delivery under load: N voice messages in flight, 2 s recognition, gunicorn (2 gthread workers), SQLite.

Everything real and on loopback: the WeChat API sandbox in its own process (recognition answers
``--latency`` seconds after each upload), gunicorn started from ``gunicorn.conf.py`` with the bot on a SQLite
store, and N simulated WeChat deliveries (``WeChatRetryClient``: 5 s tries, three in all, safe-mode
encryption) started over ``--ramp`` seconds so that about N are in flight at the peak. Each message is a
real AMR clip of one of 50 sentences that the handler echoes, so a wrong answer would show.

Reported: share answered passively, p50/p99 time to the answer, duplicates (more than one answer), losses (no
answer), wrong answers, the peak number of messages in flight, and each gunicorn worker's memory (VmRSS, peak
while the load ran and at the end). Written to ``benchmarks/out/delivery.json``. Bounded: every message ends
with its third try (15 s), the run after ``--timeout`` seconds at most.

    python benchmarks/delivery.py                  # 200 messages, 2 s recognition
    python benchmarks/delivery.py --messages 50 --latency 7
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.config import config_from_dict  # noqa: E402
from bot.testing import WeChatRetryClient  # noqa: E402
from bot.testing.net import free_port, wait_until_up  # noqa: E402

APPID, SECRET, TOKEN = "wxbenchdelivery01", "bench-secret", "bench-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SENTENCES = [f"第{i}号房间的灯" for i in range(50)]

SANDBOX = """
import sys, time
from bot.sandbox import Sandbox
port, latency = int(sys.argv[1]), float(sys.argv[2])
Sandbox(appid=sys.argv[3], appsecret=sys.argv[4], port=port, recognition_latency_s=latency, window_s=30).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    try:
        wait_until_up(url, proc, timeout=timeout, interval=0.1)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


def write_config(directory: Path, sandbox_url: str, args: argparse.Namespace) -> Path:
    voice_extra = "".join(f"{k} = {v}\n" for k, v in (("poll_initial_s", args.poll_initial),
                                                        ("poll_max_s", args.poll_max)) if v is not None)
    text = f"""
[wechat]
appid = "{APPID}"
appsecret = "{SECRET}"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
api_base_url = "{sandbox_url}"

[handlers]
routers = ["handlers.echo:router"]

[voice]
recognizers = ["wechat"]
window_s = 30.0
{voice_extra}
[storage]
url = "sqlite:///{directory / 'state.db'}"

[reply]
threads = {args.threads}

[logging]
level = "{args.log_level}"
"""
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
        running = sum(json.loads(v).get("state") == "running" for (v,) in rows)
        if running == 0 or time.monotonic() > deadline:
            time.sleep(0.5)  # the send itself
            return running
        time.sleep(0.2)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    started_procs: list[subprocess.Popen[bytes]] = []
    workdir = Path(tempfile.mkdtemp(prefix="wvb-bench-delivery-"))
    try:
        port = free_port()
        sandbox = subprocess.Popen([sys.executable, "-c", SANDBOX, str(port), str(args.latency), APPID, SECRET],
                                   cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        started_procs.append(sandbox)
        sandbox_url = f"http://127.0.0.1:{port}"
        wait_http(f"{sandbox_url}/sandbox/", sandbox)
        clips = [requests.post(f"{sandbox_url}/sandbox/voices", json={"text": t, "duration_s": args.clip},
                               timeout=10).json()["media_id"] for t in SENTENCES]

        config_path = write_config(workdir, sandbox_url, args)
        bind = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "WECHAT_VOICEBOT_CONFIG": str(config_path), "WVB_BIND": bind,
               "WEB_CONCURRENCY": str(args.workers), "WVB_THREADS": str(args.threads)}
        with (workdir / "gunicorn.log").open("wb") as log:
            gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")],
                                        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started_procs.append(gunicorn)
        wait_http(f"http://{bind}/healthz", gunicorn)
        while len(children(gunicorn.pid)) < args.workers:
            time.sleep(0.1)
        idle_rss = {pid: rss_kb(pid) for pid in children(gunicorn.pid)}

        config = config_from_dict({"wechat": {"appid": APPID, "appsecret": SECRET, "token": TOKEN,
                                              "encoding_aes_key": AES_KEY}})
        url = f"http://{bind}/wechat"
        results: list[dict[str, Any]] = [{} for _ in range(args.messages)]
        in_flight, peak, lock = 0, 0, threading.Lock()

        def one(i: int, start_at: float) -> None:
            nonlocal in_flight, peak
            time.sleep(max(0.0, start_at - time.monotonic()))
            client = WeChatRetryClient(config, url, wait_s=5.0, tries=3)
            user = f"obench{i:05d}{os.getpid()}"
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            try:
                seen = client.voice(clips[i % len(clips)], openid=user)
            finally:
                with lock:
                    in_flight -= 1
            results[i] = {"openid": user, "expected": SENTENCES[i % len(SENTENCES)], "statuses": seen.statuses,
                          "passive": [r.content for r in seen.passive], "answered_s": seen.answered_s,
                          "error_shown": seen.error_shown}

        cpu_before = {pid: cpu_s(pid) or 0.0 for pid in [*children(gunicorn.pid), sandbox.pid]}
        own_before = time.process_time()
        sampler = Sampler(gunicorn.pid)
        sampler.start()
        load_before = os.getloadavg()
        t0 = time.monotonic() + 0.5
        threads = [threading.Thread(target=one, args=(i, t0 + args.ramp * i / max(1, args.messages - 1)), daemon=True)
                   for i in range(args.messages)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + args.timeout
        for t in threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        wall = time.monotonic() - t0
        pending = settle(workdir / "state.db", args.settle_max)  # late jobs send through customer service
        sampler.stop_event.set()
        custom = requests.get(f"{sandbox_url}/sandbox/messages", timeout=10).json()
        end_rss = {pid: rss_kb(pid) for pid in children(gunicorn.pid)}
        used = lambda pid: round((cpu_s(pid) or 0.0) - cpu_before.get(pid, 0.0), 2)  # noqa: E731
        cpu = {"workers": [used(pid) for pid in children(gunicorn.pid)], "sandbox": used(sandbox.pid),
               "load_generator": round(time.process_time() - own_before, 2)}
    finally:
        for proc in started_procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    by_user = Counter(m["touser"] for m in custom)
    cs_text: dict[str, list[str]] = {}
    for m in custom:
        cs_text.setdefault(m["touser"], []).append(m.get("text", {}).get("content", ""))
    answered_s, passive_n, dup, lost, wrong, errors, unfinished = [], 0, 0, 0, 0, 0, 0
    for r in results:
        if not r:
            unfinished += 1
            continue
        answers = r["passive"] + cs_text.get(r["openid"], [])
        passive_n += bool(r["passive"])
        dup += len(answers) > 1
        lost += not answers
        wrong += any(a != r["expected"] for a in answers)
        errors += r["error_shown"]
        if r["passive"] and r["answered_s"] is not None:
            answered_s.append(r["answered_s"])
    n = args.messages
    return {
        "messages": n, "recognition_latency_s": args.latency, "ramp_s": args.ramp, "clip_s": args.clip,
        "poll_initial_s": args.poll_initial, "poll_max_s": args.poll_max,
        "workers": args.workers, "threads_per_worker": args.threads, "store": "sqlite", "worker_class": "gthread",
        "peak_in_flight": peak, "wall_s": round(wall, 2),
        "passive_share": round(passive_n / n, 4), "customer_service": sum(by_user.values()),
        "p50_s": _r(statistics.median(answered_s) if answered_s else None), "p99_s": _r(percentile(answered_s, 0.99)),
        "max_s": _r(max(answered_s) if answered_s else None),
        "answered_s": sorted(_r(x) for x in answered_s),  # per message (passive answers), for the report's plot
        "duplicates": dup, "lost": lost, "wrong": wrong, "error_shown": errors, "unfinished": unfinished,
        "still_running_at_end": pending,
        "tries": dict(Counter(len(r["statuses"]) for r in results if r)),
        "worker_rss_mb": {str(pid): {"idle": _mb(idle_rss.get(pid)), "peak": _mb(sampler.peak.get(pid)),
                                     "end": _mb(end_rss.get(pid))} for pid in sorted(set(idle_rss) | set(end_rss))},
        "work_dir": str(workdir) if args.keep else None, "cpu_s": cpu, "loadavg_before": [round(x, 2) for x in load_before], "cpus": os.cpu_count(),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--latency", type=float, default=2.0, help="recognition latency in the sandbox, seconds")
    ap.add_argument("--ramp", type=float, default=2.0, help="start the messages over this many seconds")
    ap.add_argument("--clip", type=float, default=1.0, help="length of each voice clip, seconds")
    ap.add_argument("--poll-initial", type=float, help="[voice] poll_initial_s (default: the bot's)")
    ap.add_argument("--poll-max", type=float, help="[voice] poll_max_s (default: the bot's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=160, help="gunicorn threads and [reply] threads per worker")
    ap.add_argument("--settle-max", type=float, default=30.0, help="wait this long at most for late jobs")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--log-level", default="WARNING", help="the bot's log level (gunicorn.log in the work dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (config, SQLite file, gunicorn.log)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "delivery.json"))
    args = ap.parse_args(argv)
    result = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    ok = result["duplicates"] == 0 and result["lost"] == 0 and result["wrong"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
