"""Webhook throughput: our bot as deployed vs a bare Flask + wechatpy handler, both under gunicorn, over loopback.

    python benchmarks/webhook.py            # full: 5 alternating rounds of 5 s per server and mode (~5 minutes)
    python benchmarks/webhook.py --quick    # smoke run: 1 round of 2 s per server and mode

Every server answers a text push with an echo, in plaintext and in safe (AES) mode. The headline compares
ours in the project's default configuration with the bare handler under the same gunicorn settings:

- ours ("default"): started the way the README's "Deploying" section does it, ``gunicorn -c gunicorn.conf.py``
  (gthread, 2 workers × 64 threads) with ``WVB_BIND`` and ``WECHAT_VOICEBOT_CONFIG``, the config keeping every
  default except what the benchmark needs (secrets, ``handlers.echo:router``, api_base_url at a dead port,
  the path): the SQLite store (a file in the temp dir) and ``[logging] level = "INFO"``, so each message writes
  its ``bot.message`` line (the header counts those lines in the server's log).
- bare: ``benchmarks/bare_app.py`` under the settings ``gunicorn.conf.py`` produces (read from it, written as a
  plain gunicorn config: that file's preflight loads a bot config), logging at INFO too (it has no per-message
  line, so that costs it nothing).
- a second, labelled table: ours with ``memory://`` and WARNING logging under the same gunicorn settings. With two
  workers a memory store does not deduplicate across workers: not a deployable configuration, kept for
  comparison with earlier numbers.
- with ``--claim-first``, a table of the defaults with ``[reply] fast_path_s = 0`` (claim before the handler: two
  writes a message), for what the fast path gains in the same rounds;
- with ``--breakdown``, a third table: each default alone (the SQLite store with WARNING logging, ``memory://``
  with INFO), so the default's gap splits into what the store and what the per-message log line cost.

Rounds alternate the servers (bare, default, memory, …, then the reverse) so that a noisy machine's drift hits
all equally; the tables show medians over the rounds, the spread of the per-round ratios and server CPU per
request. A run of 5 s is five back-to-back runs of 1 s, each replaying requests signed just before it with fresh
timestamps, a fresh nonce and a distinct MsgId each, so the load generator does no crypto and the default 300 s
replay window stays on; each message's CreateTime is about when it will be sent (at the rate its server reached
before, erring towards the past), as a WeChat message's first try comes within a second of its making — the bot
reads nothing before a fast handler of a message that fresh, and reads first when a message is older (a pool
signed for 5 s would grow stale) or made in its future (its clock is behind: the benchmark fails when the default
server logs that). Throughput is the segments' requests over their seconds; p50/p99 are the segments' medians.
The load comes from wrk
with a Lua script replaying the pre-signed requests (each once), or, when wrk is not installed, from a
multi-process Python generator over keep-alive ``http.client`` connections. Each server's reply is checked
with a BotClient round trip before measuring. Results are printed and written to
``benchmarks/out/webhook.json``. Exit status: 0 with numbers, 2 when a server could not be started or answered
wrongly, or the default server did not log its per-message lines or found a message made in its future (the
numbers would mean nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [str(REPO), str(BENCH_DIR)]

import _load  # noqa: E402
from _load import LoadResult, Request, Signer  # noqa: E402
from _servers import (  # noqa: E402
    GUNICORN_CONF,
    PATH,
    QUIET_VARIANTS,
    VARIANTS,
    Server,
    bench_secrets,
    gunicorn_settings,
    write_gunicorn_conf,
    write_our_config,
)

from bot.config import config_from_dict  # noqa: E402
from bot.testing.client import BotClient  # noqa: E402
from bot.testing.net import free_port  # noqa: E402

MODES = ("plaintext", "safe")
TARGET_RATIO = 0.75  # issue 23 (issue 12 aimed at 0.9x: README "Benchmarks")
HEADLINE = "default"
LOG_LINE = " outcome="  # in each message's bot.message line (text format)
BEHIND_LINE = "the clock is behind WeChat's"  # bot/delivery/fast.py: a CreateTime in the server's future


# -- measuring -------------------------------------------------------------------------------------------------

@dataclass
class Bench:
    args: argparse.Namespace
    signer: Signer
    workdir: Path
    use_wrk: bool
    estimates: dict[tuple[str, str], float] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)  # per server: ok replies, warm-ups included

    def _run(self, server: Server, reqs: list[Request], duration: float) -> LoadResult:
        if self.use_wrk:
            return _load.run_wrk(server.url, reqs, self.workdir, threads=self.args.wrk_threads,
                                 connections=self.args.connections, duration=duration)
        return _load.run_python("127.0.0.1", server.port, reqs, processes=self.args.py_processes,
                                connections=self.args.connections, duration=duration)

    def measure(self, server: Server, mode: str, duration: float, *, warmup: bool = False) -> LoadResult:
        """One run of ``duration`` s, as back-to-back 1 s segments, each with a pool signed just before it: a
        WeChat message's first try comes within a second of its making, and the bot reads nothing before a
        fast handler of a message that fresh (bot/delivery/fast.py) — a pool signed for 5 s would grow stale."""
        parts = [self.segment(server, mode, warmup=warmup) for _ in range(max(1, round(duration)))]
        if len(parts) == 1:
            return parts[0]
        requests, seconds = sum(p.requests for p in parts), sum(p.seconds for p in parts)
        return LoadResult(
            requests=requests, seconds=seconds, rps=requests / max(seconds, 1e-9),
            p50_ms=median([p.p50_ms for p in parts]), p99_ms=median([p.p99_ms for p in parts]),
            ok=sum(p.ok for p in parts), bad=sum(p.bad for p in parts), errors=sum(p.errors for p in parts),
            exhausted=any(p.exhausted for p in parts),
            bytes_per_response=sum(p.bytes_per_response * p.requests for p in parts) / max(1, requests),
            server_cpu_us=sum((p.server_cpu_us or 0.0) * p.requests for p in parts) / max(1, requests))

    def segment(self, server: Server, mode: str, *, warmup: bool = False) -> LoadResult:
        """One bounded 1 s run; the pool of requests is sized from what this server did before, doubled on a
        miss."""
        key = (server.name, mode)
        estimate = self.estimates.get(key, self.args.initial_rps)
        for _attempt in range(4):
            count = max(1000, int(estimate * 1.5) + 4 * self.args.connections)
            # fresh timestamps, distinct MsgIds, each message made about when it will be sent
            reqs = self.signer.make(mode, count, rate=estimate)
            cpu = server.cpu_seconds()
            result = self._run(server, reqs, 1.0)
            result.server_cpu_us = (server.cpu_seconds() - cpu) / max(1, result.requests) * 1e6
            self.answered[server.name] = self.answered.get(server.name, 0) + result.ok
            if warmup or not result.exhausted:
                break
            estimate = max(estimate * 2, result.rps * 2)
        self.estimates[key] = max(result.rps * (2 if result.exhausted else 1), 1.0)
        return result


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def validate(config: Any, server: Server, mode: str) -> None:
    """One real round trip through BotClient: the reply must decrypt and echo the text."""
    client = BotClient(config, url=server.url, mode=mode, timeout=10)
    text = "校验 check ✓"
    reply = client.text(text)
    if reply.status != 200 or reply.content != text:
        raise RuntimeError(f"{server.name} ({mode}) answered {reply.status} {reply.body[:200]!r}, expected an echo")


def summarize(per: dict[str, list[LoadResult]]) -> dict[str, Any]:
    """Medians per server; for each server but bare its ratios to bare (medians, per round, CPU)."""
    b = per["bare"]
    out: dict[str, Any] = {}
    for name, runs in per.items():
        s = {"rps": median([x.rps for x in runs]), "p50_ms": median([x.p50_ms for x in runs]),
             "p99_ms": median([x.p99_ms for x in runs]), "cpu_us": median([x.server_cpu_us for x in runs])}
        if name != "bare":
            s["ratio"] = s["rps"] / out["bare"]["rps"]
            s["paired_ratios"] = [y.rps / x.rps for x, y in zip(b, runs)]
            # CPU per request is far less sensitive to a noisy neighbour than req/s: bare/ours is the
            # throughput ratio a saturated machine would show with the load generator elsewhere.
            s["cpu_ratio"] = out["bare"]["cpu_us"] / s["cpu_us"]
            s["meets_target"] = s["ratio"] >= TARGET_RATIO
        out[name] = s
    return out


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
        "versions": {p: _version(p) for p in ("gunicorn", "flask", "werkzeug", "wechatpy", "cryptography",
                                              "xmltodict")},
    }


def tree_state() -> dict[str, Any]:
    """Which code was measured: HEAD plus the uncommitted changes under bot/ and handlers/."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"head": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "bot", "handlers", "gunicorn.conf.py").splitlines()}


def _version(package: str) -> str:
    try:
        return version(package)
    except Exception:
        return "?"


# -- the servers -----------------------------------------------------------------------------------------------

def build_servers(args: argparse.Namespace, workdir: Path, secrets_: dict[str, str],
                  overrides: list[str]) -> tuple[list[Server], dict[str, Any]]:
    """bare, default, memory (+ direct, cand), each in its own directory (its own config and SQLite file)."""
    dead_port = free_port()
    configs = {v: write_our_config(workdir / v, secrets_, dead_port, v) for v in VARIANTS}
    settings, skipped = gunicorn_settings(configs["default"])
    bare_conf = write_gunicorn_conf(workdir / "bare" / "gunicorn.bare.conf.py", settings)

    def ours(name: str, label: str, variant: str, app: str | None = None, pythonpath: str = "") -> Server:
        port = free_port()
        config = configs[variant] if name == variant else write_our_config(workdir / name, secrets_, dead_port, variant)
        return Server(name, label, GUNICORN_CONF, port, workdir / name,
                      {"WECHAT_VOICEBOT_CONFIG": str(config), "WVB_BIND": f"127.0.0.1:{port}"}, app,
                      [*overrides, *(["--pythonpath", pythonpath] if pythonpath else [])], bot_config=config)

    port = free_port()
    servers = [
        Server("bare", "bare Flask + wechatpy handler (benchmarks/bare_app.py), logging at INFO (no per-message line)",
               bare_conf, port, workdir / "bare",
               {"BARE_TOKEN": secrets_["token"], "BARE_APPID": secrets_["appid"], "BARE_AES_KEY": secrets_["aes_key"],
                "BARE_PATH": PATH, "BARE_LOG_LEVEL": "INFO"}, "bare_app:app",
               [*overrides, "--bind", f"127.0.0.1:{port}", "--pythonpath", str(BENCH_DIR)]),
        ours("default", "ours, " + VARIANTS["default"][1], "default"),
        ours("memory", "ours, " + VARIANTS["memory"][1], "memory"),
    ]
    if args.breakdown:
        servers += [ours(v, VARIANTS[v][1], v) for v in ("sqlwarn", "meminfo")]
    if args.claim_first:
        servers.append(ours("claimfirst", VARIANTS["claimfirst"][1], "claimfirst"))
    if args.with_direct:
        servers.append(ours("direct", "diagnostic: ours with the delivery layer bypassed (benchmarks/_ours_direct.py), "
                            "default config", "default", "_ours_direct:app", str(BENCH_DIR)))
    if args.candidate:
        file, _, attr = args.candidate.rpartition(":")
        cand_path = Path(file).resolve()
        if not cand_path.is_file() or not attr:
            raise SystemExit("--candidate: expected FILE.py:APP with an existing FILE.py")
        servers.append(ours("cand", f"candidate {args.candidate}, default config", "default",
                            f"{cand_path.stem}:{attr}", f"{cand_path.parent},{BENCH_DIR}"))
    gunicorn = {"file": str(GUNICORN_CONF), "settings": settings, "not_copied_to_bare": skipped,
                "overrides": overrides, "dead_port": dead_port}
    return servers, gunicorn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s per server and mode")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds per mode (default 5)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5; wrk takes whole seconds)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated: plaintext,safe")
    ap.add_argument("--workers", type=int, help="override gunicorn.conf.py's workers, for every server")
    ap.add_argument("--worker-class", choices=("sync", "gthread"), help="override gunicorn.conf.py's worker class")
    ap.add_argument("--threads", type=int, help="override gunicorn.conf.py's threads per worker")
    ap.add_argument("--loadgen", default="auto", choices=("auto", "wrk", "python"),
                    help="wrk when installed (auto), or the Python fallback")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--py-processes", type=int, default=2, help="processes of the Python load generator")
    ap.add_argument("--initial-rps", type=float, default=4000, help="first guess that sizes the warm-up's request pool")
    ap.add_argument("--breakdown", action="store_true",
                    help="diagnostic: two more servers in the rounds, each default alone (SQLite + WARNING, "
                         "memory:// + INFO), to see what the store and the log line each cost")
    ap.add_argument("--claim-first", action="store_true",
                    help="diagnostic: one more server in the rounds, the defaults with [reply] fast_path_s = 0, to "
                         "see what the fast path (one write a message instead of two) gains")
    ap.add_argument("--with-direct", action="store_true",
                    help="diagnostic: one more server in the rounds, ours with the delivery layer bypassed "
                         "(benchmarks/_ours_direct.py: a webhook without delivery)")
    ap.add_argument("--candidate", metavar="FILE.py:APP",
                    help="A/B a patch: one more server in the rounds, the WSGI app APP of FILE.py under "
                         "gunicorn.conf.py with the default-config temp config, e.g. a module that patches bot.wsgi's app")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "webhook.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= set(MODES):
        ap.error(f"--modes: expected some of {', '.join(MODES)}")
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and _load.wrk_path() is not None)
    if use_wrk and _load.wrk_path() is None:
        ap.error("--loadgen wrk: wrk is not installed (apt-get install -y wrk)")
    overrides = [*(["--workers", str(args.workers)] if args.workers else []),
                 *(["--worker-class", args.worker_class] if args.worker_class else []),
                 *(["--threads", str(args.threads)] if args.threads else [])]

    command_line = shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["webhook.py", *argv])
    machine, tree, secrets_ = machine_info(), tree_state(), bench_secrets()
    print(f"command:  {command_line}")
    print(f"machine:  nproc={machine['nproc']} (usable {machine['usable_cpus']}), {machine['cpu'] or '?'}, "
          f"Python {machine['python']} ({machine['implementation']}), {machine['platform']}, "
          f"loadavg {' '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}")
    print(f"code:     HEAD {tree['head'] or '?'}" + (f", uncommitted: {', '.join(x[3:] for x in tree['uncommitted'])}"
                                                     if tree["uncommitted"] else ", clean"))
    print("versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()))
    if use_wrk:
        print(f"load:     {_load.wrk_version()}: -t{args.wrk_threads} -c{args.connections} -d1s × {max(1, round(args.duration))}, "
              f"Lua replay of pre-signed requests (each sent once, its own MsgId), loopback")
    else:
        print(f"load:     Python load generator ({'--loadgen python' if args.loadgen == 'python' else 'wrk not found'}): "
              f"{args.py_processes} processes × {args.connections // args.py_processes} keep-alive http.client "
              "connections, pre-signed requests (each its own MsgId), loopback")

    results: dict[str, Any] = {"command": command_line, "machine": machine, "code": tree, "headline": HEADLINE,
                               "loadgen": "wrk" if use_wrk else "python", "rounds": args.rounds,
                               "duration_s": args.duration, "connections": args.connections, "servers": {},
                               "runs": [], "summary": {}, "log_lines": {}, "target_ratio": TARGET_RATIO}
    started: list[Server] = []
    exit_code = 0
    with tempfile.TemporaryDirectory(prefix="wvb-bench-") as tmp:
        workdir = Path(tmp)
        try:
            measured, gunicorn = build_servers(args, workdir, secrets_, overrides)
        except (RuntimeError, SystemExit) as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 2
        results["gunicorn"] = gunicorn
        g = gunicorn["settings"]
        print(f"gunicorn: {GUNICORN_CONF.name} sets {', '.join(f'{k}={v}' for k, v in g.items())}"
              + (f"; overridden for every server: {' '.join(overrides)}" if overrides else "")
              + (f"; not copied to bare (not plain data): {', '.join(gunicorn['not_copied_to_bare'])}"
                 if gunicorn["not_copied_to_bare"] else ""))
        print(f"rounds:   {args.rounds} × {args.duration:g} s per server and mode, alternating "
              f"{', '.join(s.name for s in measured)} then the reverse; medians reported")
        print("servers:")
        for s in measured:
            results["servers"][s.name] = {"label": s.label, "command": s.shown(),
                                          "config": s.bot_config.read_text() if s.bot_config else None}
            print(f"  {s.name:8} {s.label}\n           $ {s.shown()}")
            if s.bot_config:
                print("           config: " + " | ".join(
                    ln for ln in s.bot_config.read_text().splitlines()
                    if ln and not ln.startswith("#") and not ln.startswith(("appid", "appsecret", "token", "encoding_"))))
        config = config_from_dict(tomllib.loads(measured[1].bot_config.read_text()), env={})
        bench = Bench(args, Signer(secrets_["token"], secrets_["appid"], secrets_["aes_key"], PATH), workdir, use_wrk)
        try:
            for s in measured:
                started.append(s.start())
                for mode in modes:
                    validate(config, s, mode)
                    bench.answered[s.name] = bench.answered.get(s.name, 0) + 1
            print(f"replies validated (BotClient round trip) in {', '.join(modes)}\n", flush=True)

            for mode in modes:
                for s in measured:
                    bench.measure(s, mode, 1.0, warmup=True)
                per: dict[str, list[LoadResult]] = {s.name: [] for s in measured}
                for r in range(args.rounds):
                    for s in measured if r % 2 == 0 else measured[::-1]:
                        res = bench.measure(s, mode, args.duration)
                        per[s.name].append(res)
                        results["runs"].append({"mode": mode, "round": r + 1, "server": s.name, **res.as_dict()})
                        print(f"  {mode:9} round {r + 1}/{args.rounds} {s.name:7}: {res.rps:8.1f} req/s  "
                              f"p50 {res.p50_ms:6.1f} ms  p99 {res.p99_ms:6.1f} ms  "
                              f"server CPU {res.server_cpu_us:6.0f} us/req  ({res.requests} ok={res.ok} "
                              f"bad={res.bad} errors={res.errors}{' EXHAUSTED' if res.exhausted else ''})", flush=True)
                        if res.bad:
                            exit_code = 2
                results["summary"][mode] = summarize(per)
                print(flush=True)
        except Exception as exc:
            print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            exit_code = 2
        finally:
            for s in started:
                s.stop()
            for s in started:  # after the stop: every worker has written its lines
                if s.bot_config and s.name not in QUIET_VARIANTS:  # the servers that log each message
                    lines, answered = s.count_in_log(LOG_LINE), bench.answered.get(s.name, 0)
                    results["log_lines"][s.name] = {"lines": lines, "answered": answered}
                    print(f"log:      {s.name}: {lines} per-message INFO lines ('{LOG_LINE.strip()}') for {answered} "
                          "answered messages (requests still in flight when a run stopped are logged too)")
                    if lines < answered and s.name == HEADLINE and not exit_code:
                        print(f"  {s.name} wrote fewer per-message lines than it answered messages: "
                              "logging was not on as configured", file=sys.stderr)
                        exit_code = 2
                behind = s.count_in_log(BEHIND_LINE)
                if behind and s.bot_config:
                    print(f"  {s.name} found messages made in its future {behind} time(s): its fast handlers read "
                          "first for 10 minutes each time, which a server in step with WeChat does not",
                          file=sys.stderr)
                    exit_code = exit_code or (2 if s.name == HEADLINE else 0)
                if exit_code and s.proc is not None and s.log_tail(10):
                    print(f"--- {s.name} log (last lines) ---\n{s.log_tail(10)}", file=sys.stderr)

    if results["summary"]:
        print_tables(results, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {args.out}")
    return exit_code


def print_tables(results: dict[str, Any], args: argparse.Namespace) -> None:
    g = results["gunicorn"]["settings"]
    over = results["gunicorn"]["overrides"]
    workers = f"{g.get('workers')} {g.get('worker_class')} workers × {g.get('threads')} threads" + \
        (f" (overridden: {' '.join(over)})" if over else "")
    head = (f"{'mode':10} {'server':8} {'req/s':>8} {'÷ bare':>7} {'per-round':>11}  {'p50/p99 ms':>13}  "
            f"{'CPU us/req':>10} {'CPU ratio':>9}")

    def span(ratios: list[float]) -> str:
        return f"{min(ratios):.2f}–{max(ratios):.2f}" if len(ratios) > 1 else f"{ratios[0]:.2f}"

    def table(title: str, names: list[str], note: str) -> None:
        print(f"\n{title}\n{head}\n{'-' * len(head)}")
        for mode, s in results["summary"].items():
            for name in ["bare", *names]:
                if name not in s:
                    continue
                r = s[name]
                ratio = "" if name == "bare" else f"{r['ratio']:.2f}x"
                spread = "" if name == "bare" else span(r["paired_ratios"])
                cpu_ratio = "" if name == "bare" else f"{r['cpu_ratio']:.2f}x"
                verdict = ("  ok" if r["meets_target"] else "  BELOW") if name == HEADLINE else ""
                print(f"{mode:10} {name:8} {r['rps']:8.1f} {ratio:>7} {spread:>11}  "
                      f"{r['p50_ms']:6.1f}/{r['p99_ms']:6.1f}  {r['cpu_us']:10.0f} {cpu_ratio:>9}{verdict}")
        print(note)

    rounds = f"medians of {args.rounds} round(s) × {args.duration:g} s"
    table(f"webhook throughput, text echo — DEFAULT CONFIGURATION (SQLite, INFO, gunicorn -c gunicorn.conf.py: "
          f"{workers}), {rounds}; target ≥{TARGET_RATIO:.2f}x",
          [HEADLINE, "cand", "direct"],
          "÷ bare = ours/bare req/s (medians); per-round = min–max of each round's pair; CPU ratio = bare/ours server "
          "CPU per request (master + workers, user + system): the throughput ratio with other processes' noise removed")
    table(f"second table — ours with memory:// and WARNING logging, same gunicorn settings, same bare runs: NOT a "
          f"deployable configuration (a memory store does not deduplicate across {g.get('workers')} workers); for "
          "comparison with earlier numbers", ["memory"], "")
    if args.claim_first:
        table("claim-first (--claim-first) — the defaults with [reply] fast_path_s = 0, same bare runs",
              ["claimfirst"], "its gap to the default = what the fast path gains (one write a message, and a read first only "
              "for a message that is not fresh, instead of two writes)")
    if args.breakdown:
        table("breakdown (--breakdown) — each default alone, same bare runs: sqlwarn = SQLite store + WARNING, "
              "meminfo = memory:// + INFO (not deployable)", ["sqlwarn", "meminfo"],
              "sqlwarn's gap to memory = what the SQLite store costs; meminfo's gap to memory = what the "
              "per-message INFO line costs; the default pays both")


if __name__ == "__main__":
    sys.exit(main())
