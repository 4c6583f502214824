"""Webhook cost in CPU instructions per request: our app vs the bare Flask + wechatpy handler, in process.

    python benchmarks/webhook_instructions.py                     # plaintext and safe, both variants, ~3 minutes
    python benchmarks/webhook_instructions.py --variants default  # the headline only
    python benchmarks/webhook_instructions.py --requests 400      # more requests per count (slower, same answer)

The target is about requests/s under gunicorn (``benchmarks/webhook.py``), but on a shared 2-core machine
those rounds swing by ±10 %. Instruction counts do not: valgrind's callgrind counts what the interpreter
executes, the same for the same code and input whatever else the machine is doing (ours still moves by a few %
between runs: its heartbeat thread's work depends on wall time, which valgrind stretches). Each app's WSGI callable
answers pre-signed text pushes in one process, once N and once 3N of them; the difference of the two totals
divided by 2N is the cost of one request (envelope, routing, delivery, reply), with start-up, imports and the
signing of the requests (always the same count) cancelled out. No sockets and no gunicorn: those cost both
servers the same, so the gunicorn ratio is closer to 1 than this one.

The apps, with webhook.py's configs (benchmarks/_servers.py):

- bare: ``bare_app:app``, logging at INFO (it has no per-message line);
- ours, ``default`` (the headline): ``bot.wsgi:app`` on the defaults — SQLite store (a file in the run's own temp
  dir), ``[logging] level = "INFO"``, each message's ``bot.message`` line written to a log file (the child's
  stderr; counted afterwards);
- ours, ``memory`` (a labelled variant, ``--variants``): memory:// and WARNING — not a deployable configuration
  with several workers, kept for comparison with earlier numbers.

Results go to stdout and ``benchmarks/out/webhook_instructions.json``; exit 2 when valgrind is missing or a
reply was wrong.
"""
from __future__ import annotations

import argparse
import io
import json
import math
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
TARGET_RATIO = 0.75  # issue 23, as benchmarks/webhook.py
sys.path[:0] = [str(REPO), str(BENCH_DIR)]

from _servers import VARIANTS, bench_secrets, clean_env, write_our_config  # noqa: E402

from bot.testing.net import free_port  # noqa: E402

LOG_LINE = " outcome="  # in each message's bot.message line


def child(app_name: str, mode: str, handled: int, signed: int) -> None:
    """Runs under valgrind: sign ``signed`` requests, answer ``handled`` of them (after a warm-up)."""
    from _load import _init_signer, _sign_range
    token, appid, aes_key = os.environ["BARE_TOKEN"], os.environ["BARE_APPID"], os.environ["BARE_AES_KEY"]
    if app_name == "bare":
        from bare_app import app
    else:  # a variant of ours: its config is in WECHAT_VOICEBOT_CONFIG
        from bot.web.wsgi import app
    _init_signer(token, appid, aes_key, mode, "/wechat")
    base = int(time.time()) * 10**6
    statuses: list[str] = []

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        statuses.append(status)

    # Signed 10 at a time, each batch answered at once (each message made just before it is sent, as WeChat's
    # first tries are: bot/delivery/fast.py reads nothing first for them); every run signs ``signed`` requests,
    # so the signing cancels out between the N and 3N runs.
    for first in range(base, base + signed, 10):
        batch = _sign_range((first, min(first + 10, base + signed), first, time.time(), math.inf))
        if first - base >= WARMUP + handled:
            continue
        for path_query, body in batch[:WARMUP + handled - (first - base)]:
            path, query = path_query.split("?", 1)
            environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": query,
                       "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "text/xml", "wsgi.input": io.BytesIO(body),
                       "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
                       "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr}
            answer = b"".join(app(environ, start_response))
            if not statuses[-1].startswith("200") or b"<xml>" not in answer:
                sys.exit(f"{app_name} answered {statuses[-1]} {answer[:120]!r}")


def instructions(app_name: str, mode: str, handled: int, signed: int, env: dict[str, str], jobdir: Path) -> int:
    """Instructions callgrind counted for one child run (in ``jobdir``: valgrind.log, and the app's log as app.log)."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", f"--log-file={jobdir / 'valgrind.log'}",
               sys.executable, __file__, "--child", app_name, mode, str(handled), str(signed)]
    with (jobdir / "app.log").open("wb") as log:
        done = subprocess.run(command, env=env, cwd=jobdir, stdout=subprocess.DEVNULL, stderr=log, timeout=1800)
    vg = (jobdir / "valgrind.log").read_text(errors="replace") if (jobdir / "valgrind.log").exists() else ""
    found = re.search(r"Collected\s*:\s*(\d+)", vg)
    if done.returncode != 0 or found is None:
        tail = (jobdir / "app.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{app_name} {mode}: valgrind exited {done.returncode}:\n{vg[-1000:]}\n{tail}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="N: each app runs N and 3N requests (default 200)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated: plaintext,safe")
    ap.add_argument("--variants", default="default,memory",
                    help="our configs: default (the headline) first, then memory (memory:// + WARNING)")
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
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or not set(variants) <= set(VARIANTS) or variants[0] != "default":
        ap.error(f"--variants: default first, then some of {', '.join(VARIANTS)}")
    n = args.requests
    signed = WARMUP + 3 * n
    results: dict[str, dict[str, dict[str, float]]] = {v: {} for v in variants}
    log_lines: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="wvb-instr-") as tmp:
        secrets_, dead_port = bench_secrets(), free_port()
        jobs = [(app_name, mode, count) for mode in modes for app_name in ("bare", *variants) for count in (n, 3 * n)]
        env_of, dir_of = {}, {}
        for job in jobs:  # each child its own directory: its own config, SQLite file and logs
            app_name, mode, count = job
            jobdir = dir_of[job] = Path(tmp) / f"{app_name}-{mode}-{count}"
            config = write_our_config(jobdir, secrets_, dead_port, app_name if app_name != "bare" else "default")
            env_of[job] = clean_env({
                "BARE_TOKEN": secrets_["token"], "BARE_APPID": secrets_["appid"], "BARE_AES_KEY": secrets_["aes_key"],
                "BARE_PATH": "/wechat", "BARE_LOG_LEVEL": "INFO", "WECHAT_VOICEBOT_CONFIG": str(config),
                "PYTHONPATH": os.pathsep.join([str(REPO), str(BENCH_DIR)]),
                "PYTHONHASHSEED": "0"})  # same dict layouts in every run; random nonces still move counts by ~1 %
        print(f"callgrind, in process, {n} and {3 * n} requests per app and mode (+{WARMUP} warm-up); "
              f"Python {sys.version.split()[0]}", flush=True)
        print("apps:  bare (bare_app:app, INFO, no per-message line)" + "".join(
            f"; ours {v}: {VARIANTS[v][1]}" for v in variants), flush=True)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            counts = dict(zip(jobs, pool.map(lambda j: instructions(*j, signed, env_of[j], dir_of[j]), jobs)))
        for job in jobs:
            if job[0] == "default":
                text = (dir_of[job] / "app.log").read_text(errors="replace")
                log_lines[f"{job[1]}-{job[2]}"] = {"lines": text.count(LOG_LINE), "expected": WARMUP + job[2]}
        for variant in variants:
            for mode in modes:
                per = {a: (counts[(a, mode, 3 * n)] - counts[(a, mode, n)]) / (2 * n) for a in ("bare", variant)}
                results[variant][mode] = {"bare_instructions": per["bare"], "ours_instructions": per[variant],
                                          "ratio": per["bare"] / per[variant]}
    print("log:   ours default wrote its per-message INFO lines: " + ", ".join(
        f"{k} {v['lines']}/{v['expected']}" for k, v in log_lines.items()))
    for variant in variants:
        title = ("DEFAULT CONFIGURATION (SQLite, INFO)" if variant == "default" else
                 "variant memory:// + WARNING — not a deployable configuration; for comparison with earlier numbers")
        print(f"\nours = {title}")
        print(f"{'mode':10} {'bare instr/req':>15} {'ours instr/req':>15} {'bare/ours':>10}"
              + (f"  target ≥{TARGET_RATIO:.2f}x" if variant == "default" else ""))
        for mode, r in results[variant].items():
            verdict = ("ok" if r["ratio"] >= TARGET_RATIO else "BELOW") if variant == "default" else ""
            print(f"{mode:10} {r['bare_instructions']:15,.0f} {r['ours_instructions']:15,.0f} {r['ratio']:9.2f}x  {verdict}")
    print(f"(bare/ours: the throughput ratio one core would show for the app's own work; "
          f"{time.monotonic() - started:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"requests": n, "results": results["default"], "variants": results,
                                    "labels": {v: VARIANTS[v][1] for v in variants}, "log_lines": log_lines},
                                   indent=2, ensure_ascii=False))
    print(f"written: {args.out}")
    short = [k for k, v in log_lines.items() if v["lines"] < v["expected"]]
    if short:
        print(f"ours default wrote fewer per-message lines than messages in {', '.join(short)}", file=sys.stderr)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())
