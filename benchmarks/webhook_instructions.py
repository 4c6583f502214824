"""Webhook cost in CPU instructions per request: our app vs the bare Flask + wechatpy handler, in process.

    python benchmarks/webhook_instructions.py                  # plaintext and safe, ~2 minutes on 2 cores
    python benchmarks/webhook_instructions.py --requests 400   # more requests per count (slower, same answer)

The target is about requests/s under gunicorn (``benchmarks/webhook.py``), but on a shared 2-core machine
those rounds swing by ±10 %. Instruction counts do not: valgrind's callgrind counts what the interpreter
executes, the same for the same code and input whatever else the machine is doing (ours still moves by a few %
between runs: its heartbeat thread's work depends on wall time, which valgrind stretches). Each app's WSGI callable
(``bare_app:app``; ours is ``bot.wsgi:app`` with the same config as in webhook.py: handlers.echo, memory://,
WARNING logs) answers pre-signed text pushes in one process, once N and once 3N of them; the difference of
the two totals divided by 2N is the cost of one request (envelope, routing, delivery, reply), with start-up,
imports and the signing of the requests (always the same count) cancelled out. No sockets and no gunicorn:
those cost both servers the same, so the gunicorn ratio is closer to 1 than this one.

Results go to stdout and ``benchmarks/out/webhook_instructions.json``; exit 2 when valgrind is missing or a
reply was wrong.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
MODES = ("plaintext", "safe")
WARMUP = 50
TARGET_RATIO = 0.9
sys.path[:0] = [str(REPO), str(BENCH_DIR)]

from bot.testing.net import free_port  # noqa: E402
from webhook import bench_secrets, our_config_toml  # noqa: E402


def child(app_name: str, mode: str, handled: int, signed: int) -> None:
    """Runs under valgrind: sign ``signed`` requests, answer ``handled`` of them (after a warm-up)."""
    from _load import _init_signer, _sign_range
    token, appid, aes_key = os.environ["BARE_TOKEN"], os.environ["BARE_APPID"], os.environ["BARE_AES_KEY"]
    if app_name == "bare":
        from bare_app import app
    else:
        from bot.web.wsgi import app
    _init_signer(token, appid, aes_key, mode, "/wechat")
    base = int(time.time()) * 10**6
    environs = []
    for path_query, body in _sign_range((base, base + signed)):
        path, query = path_query.split("?", 1)
        environs.append({"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": query,
                         "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "text/xml", "wsgi.input": io.BytesIO(body),
                         "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
                         "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr})
    statuses: list[str] = []

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        statuses.append(status)

    for environ in environs[:WARMUP + handled]:
        body = b"".join(app(environ, start_response))
        if not statuses[-1].startswith("200") or b"<xml>" not in body:
            sys.exit(f"{app_name} answered {statuses[-1]} {body[:120]!r}")


def instructions(app_name: str, mode: str, handled: int, signed: int, env: dict[str, str]) -> int:
    """Instructions callgrind counted for one child run."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
               "--child", app_name, mode, str(handled), str(signed)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{app_name} {mode}: valgrind exited {done.returncode}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="N: each app runs N and 3N requests (default 200)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated: plaintext,safe")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "webhook_instructions.json")
    ap.add_argument("--child", nargs=4, metavar=("APP", "MODE", "HANDLED", "SIGNED"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        app_name, mode, handled, signed = args.child
        child(app_name, mode, int(handled), int(signed))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install -y valgrind): instruction counts need callgrind",
              file=sys.stderr)
        return 2
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= set(MODES):
        ap.error(f"--modes: expected some of {', '.join(MODES)}")
    n = args.requests
    signed = WARMUP + 3 * n
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="wvb-instr-") as tmp:
        secrets_ = bench_secrets()
        config = Path(tmp) / "ours.toml"
        config.write_text(our_config_toml(secrets_, free_port(), "WARNING"))  # the same config as webhook.py's
        env = {k: v for k, v in os.environ.items() if not k.startswith("WECHAT_")}
        env.update(BARE_TOKEN=secrets_["token"], BARE_APPID=secrets_["appid"], BARE_AES_KEY=secrets_["aes_key"],
                   BARE_PATH="/wechat",
                   WECHAT_VOICEBOT_CONFIG=str(config), PYTHONPATH=os.pathsep.join([str(REPO), str(BENCH_DIR)]),
                   PYTHONHASHSEED="0")  # same dict layouts in every run; random nonces still move counts by ~1 %
        print(f"callgrind, in process, {n} and {3 * n} requests per app and mode (+{WARMUP} warm-up); "
              f"Python {sys.version.split()[0]}", flush=True)
        jobs = [(app_name, mode, count) for mode in modes for app_name in ("bare", "ours") for count in (n, 3 * n)]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            counts = dict(zip(jobs, pool.map(lambda j: instructions(*j, signed, env), jobs)))
        for mode in modes:
            per = {app_name: (counts[(app_name, mode, 3 * n)] - counts[(app_name, mode, n)]) / (2 * n)
                   for app_name in ("bare", "ours")}
            results[mode] = {"bare_instructions": per["bare"], "ours_instructions": per["ours"],
                             "ratio": per["bare"] / per["ours"]}
        print(f"\n{'mode':10} {'bare instr/req':>15} {'ours instr/req':>15} {'bare/ours':>10}  target ≥{TARGET_RATIO:.2f}x")
        for mode, r in results.items():
            verdict = "ok" if r["ratio"] >= TARGET_RATIO else "BELOW"
            print(f"{mode:10} {r['bare_instructions']:15,.0f} {r['ours_instructions']:15,.0f} {r['ratio']:9.2f}x  {verdict}")
        print(f"(bare/ours: the throughput ratio one core would show for the app's own work; "
              f"{time.monotonic() - started:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"requests": n, "results": results}, indent=2))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
