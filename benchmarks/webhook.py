"""Webhook throughput: our bot vs a bare Flask + wechatpy handler, both under gunicorn, over loopback.

    python benchmarks/webhook.py            # full: 5 alternating rounds of 5 s per mode (~3-4 minutes)
    python benchmarks/webhook.py --quick    # smoke run: 1 round of 2 s per mode

Both servers answer a text push with an echo, in plaintext and in safe (AES) mode. They run side by side
with the same gunicorn settings and log level; rounds alternate bare/ours (and which goes first) so that a
noisy machine's drift hits both equally, and the table shows medians over the rounds. Requests are signed
ahead of each run with fresh timestamps, a fresh nonce and a distinct MsgId each, so the load generator
does no crypto and our default 300 s replay window stays on. The load comes from wrk with a Lua script
replaying the pre-signed requests (each once), or, when wrk is not installed, from a multi-process Python
generator over keep-alive ``http.client`` connections.

Our server runs with ``[logging] level = "WARNING"`` (the bare one has no per-message logging at all); one
extra run per mode with ``level = "INFO"`` shows what the per-message log line costs. Results are printed
and written to ``benchmarks/out/webhook.json``. Exit status: 0 with numbers, 2 when a server could not be
started or answered wrongly (the numbers would mean nothing).
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [str(REPO), str(BENCH_DIR)]

import _load  # noqa: E402
from _load import LoadResult, Request, Signer  # noqa: E402

from bot.config import config_from_dict  # noqa: E402
from bot.testing.client import BotClient  # noqa: E402
from bot.testing.net import free_port  # noqa: E402

MODES = ("plaintext", "safe")
PATH = "/wechat"
TARGET_RATIO = 0.9


# -- servers ---------------------------------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    app: str  # gunicorn APP_MODULE
    env: dict[str, str]
    port: int
    workdir: Path
    gunicorn_args: list[str]
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", *self.gunicorn_args, "--bind", f"127.0.0.1:{self.port}",
                *self.extra_args, self.app]

    def start(self) -> "Server":
        env = {k: v for k, v in os.environ.items() if not k.startswith("WECHAT_")}
        env.update(self.env)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.command(), cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name}: gunicorn did not answer /healthz within 30 s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # the master stops its own workers
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers so far (all their threads), from /proc."""
        if self.proc is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            pid, ppid = int(entry.name), int(fields[1])
            if pid == self.proc.pid or ppid == self.proc.pid:
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def bench_secrets() -> dict[str, str]:
    """A fresh Token, AppID and EncodingAESKey for one benchmark run (both servers get the same)."""
    return {"token": "bench-" + secrets.token_hex(8), "appid": "wxbench" + secrets.token_hex(5),
            "aes_key": base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")}


def our_config_toml(secrets_: dict[str, str], dead_port: int, level: str) -> str:
    return f"""# written by benchmarks/webhook.py
[wechat]
appid = "{secrets_['appid']}"
appsecret = "benchmark-secret"
token = "{secrets_['token']}"
encoding_aes_key = "{secrets_['aes_key']}"
# Nothing listens here: a text message must not need any outbound call.
api_base_url = "http://127.0.0.1:{dead_port}"

[server]
path = "{PATH}"
# replay_window_s stays at its default (300): requests are signed afresh before every run.

[handlers]
routers = ["handlers.echo:router"]
search_paths = [{json.dumps(str(REPO))}]

[storage]
url = "memory://"

[logging]
level = "{level}"
"""


# -- measuring -------------------------------------------------------------------------------------------------

@dataclass
class Bench:
    args: argparse.Namespace
    signer: Signer
    workdir: Path
    use_wrk: bool
    estimates: dict[tuple[str, str], float] = field(default_factory=dict)

    def _run(self, server: Server, reqs: list[Request], duration: float) -> LoadResult:
        if self.use_wrk:
            return _load.run_wrk(server.url, reqs, self.workdir, threads=self.args.wrk_threads,
                                 connections=self.args.connections, duration=duration)
        return _load.run_python("127.0.0.1", server.port, reqs, processes=self.args.py_processes,
                                connections=self.args.connections, duration=duration)

    def measure(self, server: Server, mode: str, duration: float, *, warmup: bool = False) -> LoadResult:
        """One bounded run; the pool of requests is sized from what this server did before, doubled on a miss."""
        key = (server.name, mode)
        estimate = self.estimates.get(key, self.args.initial_rps)
        for _attempt in range(4):
            count = max(1000, int(estimate * max(duration, 1) * 1.5) + 4 * self.args.connections)
            reqs = self.signer.make(mode, count)  # fresh timestamps, distinct MsgIds
            cpu = server.cpu_seconds()
            result = self._run(server, reqs, duration)
            result.server_cpu_us = (server.cpu_seconds() - cpu) / max(1, result.requests) * 1e6
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
            "uncommitted": git("status", "--porcelain", "--", "bot", "handlers").splitlines()}


def _version(package: str) -> str:
    try:
        return version(package)
    except Exception:
        return "?"


def fmt_lat(r: dict[str, float]) -> str:
    return f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s per mode")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds per mode (default 5)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5; wrk takes whole seconds)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated: plaintext,safe")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers for each server (default 2)")
    ap.add_argument("--worker-class", default="sync", choices=("sync", "gthread"),
                    help="gunicorn worker class for both servers (default sync: the faster of the two for both here)")
    ap.add_argument("--threads", type=int, default=4, help="threads per worker with --worker-class gthread")
    ap.add_argument("--loadgen", default="auto", choices=("auto", "wrk", "python"),
                    help="wrk when installed (auto), or the Python fallback")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--py-processes", type=int, default=2, help="processes of the Python load generator")
    ap.add_argument("--initial-rps", type=float, default=4000, help="first guess that sizes the warm-up's request pool")
    ap.add_argument("--no-info", action="store_true", help="skip the extra run of our server with INFO logging")
    ap.add_argument("--with-direct", action="store_true",
                    help="diagnostic: a third server in the rounds, ours with the delivery layer bypassed "
                         "(benchmarks/_ours_direct.py: a webhook without delivery)")
    ap.add_argument("--candidate", metavar="FILE.py:APP",
                    help="A/B a patch: one more server in the rounds, the WSGI app APP of FILE.py (run with our temp "
                         "config in WECHAT_VOICEBOT_CONFIG), e.g. a module that patches bot.wsgi's app")
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

    command_line = shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["webhook.py", *argv])
    machine = machine_info()
    tree = tree_state()
    gunicorn_args = ["--workers", str(args.workers), "--worker-class", args.worker_class]
    if args.worker_class == "gthread":
        gunicorn_args += ["--threads", str(args.threads)]
    gunicorn_args += ["--log-level", "warning", "--timeout", "30", "--graceful-timeout", "5", "--keep-alive", "5"]

    secrets_ = bench_secrets()
    print(f"command:  {command_line}")
    print(f"machine:  nproc={machine['nproc']} (usable {machine['usable_cpus']}), {machine['cpu'] or '?'}, "
          f"Python {machine['python']} ({machine['implementation']}), {machine['platform']}, "
          f"loadavg {' '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}")
    print(f"code:     HEAD {tree['head'] or '?'}" + (f", uncommitted under bot/ handlers/: "
          f"{', '.join(x[3:] for x in tree['uncommitted'])}" if tree["uncommitted"] else ", clean"))
    print(f"versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()))
    print(f"gunicorn: {' '.join(gunicorn_args)} --bind 127.0.0.1:PORT   (same for both servers; no access log)")
    if use_wrk:
        print(f"load:     {_load.wrk_version()}: -t{args.wrk_threads} -c{args.connections} -d{max(1, round(args.duration))}s, "
              f"Lua replay of pre-signed requests (each sent once), loopback")
    else:
        print(f"load:     Python load generator ({'--loadgen python' if args.loadgen == 'python' else 'wrk not found'}): {args.py_processes} processes × "
              f"{args.connections // args.py_processes} keep-alive http.client connections, loopback")
    print(f"rounds:   {args.rounds} × {args.duration:g} s per server and mode, alternating bare/ours; medians reported")
    print("logging:  both at WARNING (ours: [logging] level = \"WARNING\" in its temp config, so the per-message "
          "INFO line is off; the bare handler logs nothing per message)" + ("" if args.no_info else
          "; one extra run per mode of ours at INFO"), flush=True)

    results: dict[str, Any] = {"command": command_line, "machine": machine, "code": tree, "gunicorn_args": gunicorn_args,
                               "worker_class": args.worker_class, "loadgen": "wrk" if use_wrk else "python",
                               "rounds": args.rounds, "duration_s": args.duration, "connections": args.connections,
                               "runs": [], "summary": {}, "info_logging": {}, "target_ratio": TARGET_RATIO}
    servers: list[Server] = []
    exit_code = 0
    with tempfile.TemporaryDirectory(prefix="wvb-bench-") as tmp:
        workdir = Path(tmp)
        dead_port = free_port()
        for level in ("WARNING", "INFO"):
            text = our_config_toml(secrets_, dead_port, level)
            (workdir / f"ours-{level.lower()}.toml").write_text(text)
        import tomllib
        config = config_from_dict(tomllib.loads((workdir / "ours-warning.toml").read_text()), env={})
        bare = Server("bare", "bare_app:app", {"BARE_TOKEN": secrets_["token"], "BARE_APPID": secrets_["appid"],
                      "BARE_AES_KEY": secrets_["aes_key"], "BARE_PATH": PATH, "BARE_LOG_LEVEL": "WARNING"},
                      free_port(), workdir, gunicorn_args, ["--pythonpath", str(BENCH_DIR)])
        ours = Server("ours", "bot.wsgi:app", {"WECHAT_VOICEBOT_CONFIG": str(workdir / "ours-warning.toml")},
                      free_port(), workdir, gunicorn_args)
        direct = Server("direct", "_ours_direct:app", {"WECHAT_VOICEBOT_CONFIG": str(workdir / "ours-warning.toml")},
                        free_port(), workdir, gunicorn_args, ["--pythonpath", str(BENCH_DIR)])
        measured = [bare, ours] + ([direct] if args.with_direct else [])
        extras = {"direct": "ours, delivery bypassed"} if args.with_direct else {}
        if args.candidate:
            file, _, attr = args.candidate.rpartition(":")
            cand_path = Path(file).resolve()
            if not cand_path.is_file() or not attr:
                ap.error("--candidate: expected FILE.py:APP with an existing FILE.py")
            measured.append(Server("cand", f"{cand_path.stem}:{attr}",
                                   {"WECHAT_VOICEBOT_CONFIG": str(workdir / "ours-warning.toml")}, free_port(), workdir,
                                   gunicorn_args, ["--pythonpath", f"{cand_path.parent},{BENCH_DIR}"]))
            extras["cand"] = f"candidate {args.candidate}"
        ours_info = Server("ours-info", "bot.wsgi:app", {"WECHAT_VOICEBOT_CONFIG": str(workdir / "ours-info.toml")},
                           free_port(), workdir, gunicorn_args)
        bench = Bench(args, Signer(secrets_["token"], secrets_["appid"], secrets_["aes_key"], PATH), workdir, use_wrk)
        try:
            for s in measured + ([] if args.no_info else [ours_info]):
                servers.append(s.start())
                for mode in modes:
                    validate(config, s, mode)
            print(f"servers:  bare {bare.url}, ours {ours.url} (handlers.echo:router, memory://, "
                  f"api_base_url on dead port {dead_port}); replies validated in {', '.join(modes)}\n", flush=True)

            for mode in modes:
                for s in measured:
                    bench.measure(s, mode, 1.0, warmup=True)
                per: dict[str, list[LoadResult]] = {s.name: [] for s in measured}
                for r in range(args.rounds):
                    # alternate which server goes first: bare, ours (, direct) then the reverse, ...
                    order = measured if r % 2 == 0 else measured[::-1]
                    for s in order:
                        res = bench.measure(s, mode, args.duration)
                        per[s.name].append(res)
                        results["runs"].append({"mode": mode, "round": r + 1, "server": s.name, **res.as_dict()})
                        print(f"  {mode:9} round {r + 1}/{args.rounds} {s.name:6}: {res.rps:8.1f} req/s  "
                              f"p50 {res.p50_ms:6.1f} ms  p99 {res.p99_ms:6.1f} ms  "
                              f"server CPU {res.server_cpu_us:6.0f} us/req  ({res.requests} ok={res.ok} "
                              f"bad={res.bad} errors={res.errors}{' EXHAUSTED' if res.exhausted else ''})", flush=True)
                        if res.bad:
                            exit_code = 2
                b, o = per["bare"], per["ours"]
                summary = {
                    "bare_rps": median([x.rps for x in b]), "ours_rps": median([x.rps for x in o]),
                    "bare": {"p50_ms": median([x.p50_ms for x in b]), "p99_ms": median([x.p99_ms for x in b])},
                    "ours": {"p50_ms": median([x.p50_ms for x in o]), "p99_ms": median([x.p99_ms for x in o])},
                    "paired_ratios": [y.rps / x.rps for x, y in zip(b, o)],
                    "bare_cpu_us": median([x.server_cpu_us for x in b]),
                    "ours_cpu_us": median([x.server_cpu_us for x in o]),
                }
                # CPU per request is far less sensitive to a noisy neighbour than req/s: bare/ours is the
                # throughput ratio a saturated machine would show with the load generator elsewhere.
                summary["cpu_ratio"] = summary["bare_cpu_us"] / summary["ours_cpu_us"]
                summary["ratio"] = summary["ours_rps"] / summary["bare_rps"]
                summary["meets_target"] = summary["ratio"] >= TARGET_RATIO
                for name, note in extras.items():
                    d = per[name]
                    summary[name] = {"rps": median([x.rps for x in d]), "p50_ms": median([x.p50_ms for x in d]),
                                     "p99_ms": median([x.p99_ms for x in d]), "cpu_us": median([x.server_cpu_us for x in d]),
                                     "paired_ratios": [y.rps / x.rps for x, y in zip(b, d)], "note": note}
                    summary[name]["ratio"] = summary[name]["rps"] / summary["bare_rps"]
                    summary[name]["cpu_ratio"] = summary["bare_cpu_us"] / summary[name]["cpu_us"]
                results["summary"][mode] = summary

                if not args.no_info:
                    bench.measure(ours_info, mode, 1.0, warmup=True)
                    res = bench.measure(ours_info, mode, args.duration)
                    results["info_logging"][mode] = {**res.as_dict(), "ratio_to_bare": res.rps / summary["bare_rps"],
                                                     "ratio_to_ours_warning": res.rps / summary["ours_rps"]}
                    print(f"  {mode:9} INFO logging   ours: {res.rps:8.1f} req/s  p50 {res.p50_ms:6.1f} ms  "
                          f"p99 {res.p99_ms:6.1f} ms  server CPU {res.server_cpu_us:6.0f} us/req  "
                          f"({res.requests} ok={res.ok} bad={res.bad})", flush=True)
                    if res.bad:
                        exit_code = 2
                print(flush=True)
        except Exception as exc:
            print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            exit_code = 2
        finally:
            if not args.no_info and ours_info.proc is not None:
                try:
                    lines = ours_info.log_path.read_text(errors="replace").count(" outcome=")
                    results["info_logging"]["log_lines_written"] = lines
                except OSError:
                    pass
            for s in servers:
                s.stop()
            for s in servers:
                if exit_code and s.proc is not None:
                    tail = s.log_tail(10)
                    if tail:
                        print(f"--- {s.name} log (last lines) ---\n{tail}", file=sys.stderr)

    if results["summary"]:
        print_table(results, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {args.out}")
    return exit_code


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"webhook throughput, text echo — gunicorn {args.workers} {args.worker_class} workers, "
          f"medians of {args.rounds} round(s) × {args.duration:g} s")
    head = (f"{'mode':14} {'bare req/s':>10} {'ours req/s':>10} {'ratio':>6}  {'per-round':>11}  "
            f"{'bare p50/p99 ms':>16} {'ours p50/p99 ms':>16}  {'CPU us/req bare/ours':>20} {'CPU ratio':>9}  "
            f"target ≥{TARGET_RATIO:.2f}x")
    print(head)
    print("-" * len(head))

    def row(label: str, bare_rps: str, rps: float, ratio: float, span: str, bare_lat: str, lat: str, cpu: str,
            cpu_ratio: float, note: str) -> None:
        print(f"{label:14} {bare_rps:>10} {rps:10.1f} {ratio:5.2f}x  {span:>11}  {bare_lat:>16} {lat:>16}  "
              f"{cpu:>20} {cpu_ratio:8.2f}x  {note}")

    def span(ratios: list[float]) -> str:
        return f"{min(ratios):.2f}–{max(ratios):.2f}" if len(ratios) > 1 else f"{ratios[0]:.2f}"

    for mode, s in results["summary"].items():
        row(mode, f"{s['bare_rps']:.1f}", s["ours_rps"], s["ratio"], span(s["paired_ratios"]), fmt_lat(s["bare"]),
            fmt_lat(s["ours"]), f"{s['bare_cpu_us']:.0f} / {s['ours_cpu_us']:.0f}", s["cpu_ratio"],
            "ok" if s["meets_target"] else "BELOW")
    for mode, s in results["summary"].items():
        for name in ("direct", "cand"):
            if name in s:
                d = s[name]
                row(f"{mode} {name}", "", d["rps"], d["ratio"], span(d["paired_ratios"]), "", fmt_lat(d),
                    f"{s['bare_cpu_us']:.0f} / {d['cpu_us']:.0f}", d["cpu_ratio"], f"({d['note']})")
    for mode, r in results["info_logging"].items():
        if isinstance(r, dict):
            s = results["summary"][mode]
            row(mode + " INFO", "", r["rps"], r["ratio_to_bare"], "(1 run)", "", fmt_lat(r),
                f"{s['bare_cpu_us']:.0f} / {r['server_cpu_us']:.0f}", s["bare_cpu_us"] / r["server_cpu_us"],
                f"(ours at INFO: {r['ratio_to_ours_warning']:.2f}x of ours at WARNING)")
    print("ratio = ours/bare req/s (medians; per-round = each round's pair); CPU ratio = bare/ours server CPU per "
          "request (master + workers, user + system): the throughput ratio with the noise of other processes removed")


if __name__ == "__main__":
    sys.exit(main())
