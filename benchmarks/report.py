"""One benchmark report: ``benchmarks/REPORT.md`` and PNG plots from ``benchmarks/out/*.json``.

    python benchmarks/report.py              # after the benchmarks (``make bench`` runs them, then this)
    python benchmarks/report.py --out-dir /tmp/report

Reads what ``benchmarks/webhook.py``, ``voice.py`` and ``delivery.py`` wrote (a missing file is reported as
missing, not guessed), describes the machine this runs on (nproc, CPU model, memory, Python, package
versions) and plots latency distributions with matplotlib's Agg backend (no display needed). Where a JSON
has per-request latencies (voice: per message; delivery: per answered message) they are plotted as
distributions; the webhook benchmark's load generator (wrk) reports percentiles only, so its plot shows
p50/p99 per round.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PACKAGES = ("wechat-voicebot", "flask", "werkzeug", "gunicorn", "wechatpy", "cryptography", "xmltodict", "av",
            "requests", "redis", "rq", "matplotlib")
COMMANDS = {  # what ``make bench`` runs, in order
    "webhook": "python benchmarks/webhook.py --breakdown",
    "webhook_instructions": "python benchmarks/webhook_instructions.py",
    "voice": "python benchmarks/voice.py",
    "delivery": "python benchmarks/delivery.py",
    "delivery_pickup": "python benchmarks/delivery.py --pickup",
    "delivery_overload": "python benchmarks/delivery.py --overload",
}


# -- the machine ----------------------------------------------------------------------------------------------

def save_plot(fig: Any, out_dir: Path, name: str, plots: list[str], caption: str) -> list[str]:
    """Write ``fig`` as ``out_dir/name``, remember it, and return the Markdown lines that show it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    plots.append(name)
    alt = name.removesuffix(".png").replace("_", " ")
    return ["", f"![{alt}]({name})", "", caption]

def machine() -> dict[str, Any]:
    cpu_model, mem_kb = None, None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "cpu": cpu_model or platform.processor() or "unknown",
            "memory_gib": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "platform": platform.platform(), "loadavg": [round(x, 2) for x in os.getloadavg()], "versions": versions}


# -- helpers --------------------------------------------------------------------------------------------------
def load(out_dir: Path, name: str) -> tuple[dict[str, Any] | None, str]:
    path = out_dir / f"{name}.json"
    if not path.exists():
        return None, f"`{path.name}` missing: run `{COMMANDS[name]}`"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
    return json.loads(path.read_text(encoding="utf-8")), f"`benchmarks/out/{path.name}`, written {stamp}"


def fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(out)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _plt() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# -- sections -------------------------------------------------------------------------------------------------
def webhook_section(data: dict[str, Any], out_dir: Path, plots: list[str]) -> str:
    g = data.get("gunicorn", {})
    settings = ", ".join(f"{k}={v}" for k, v in g.get("settings", {}).items())
    overrides = " ".join(g.get("overrides", []))
    lines = [f"Command: `{data.get('command', COMMANDS['webhook'])}` — every server under the settings of "
             f"`gunicorn -c gunicorn.conf.py` ({settings or '?'}){f', overridden: `{overrides}`' if overrides else ''},"
             f" load generator {data.get('loadgen', '?')}, {data.get('rounds', '?')} rounds × {data.get('duration_s', '?')} s"
             f" per server and mode, {data.get('connections', '?')} connections, each request its own MsgId. Medians over"
             " the rounds; per round = the spread of each round's ratio to bare.", ""]
    servers = data.get("servers", {})

    def rows_for(names: tuple[str, ...]) -> list[list[Any]]:
        rows = []
        for mode, s in data.get("summary", {}).items():
            for name in ("bare", *names):
                r = s.get(name)
                if not isinstance(r, dict):
                    continue
                pr = r.get("paired_ratios") or []
                spread = f"{min(pr):.2f}–{max(pr):.2f}" if len(pr) > 1 else (fmt(pr[0], 2) if pr else "")
                rows.append([mode, name, r.get("rps"), r.get("p50_ms"), r.get("p99_ms"), r.get("cpu_us"),
                             "1" if name == "bare" else fmt(r.get("ratio"), 2), "" if name == "bare" else spread,
                             "" if name == "bare" else fmt(r.get("cpu_ratio"), 2)])
        return rows

    head = ["mode", "server", "req/s", "p50 ms", "p99 ms", "server CPU µs/req", "req/s ÷ bare", "per round",
            "CPU bare ÷ ours"]
    extra = ("memory", "sqlwarn", "meminfo")  # the labelled second table and the --breakdown table
    lines += ["Servers: " + "; ".join(f"**{n}**: {v.get('label')}" for n, v in servers.items() if n not in extra),
              "", table(head, rows_for(("default", "cand", "direct")))]
    if any("memory" in s for s in data.get("summary", {}).values()):
        lines += ["", f"Second table — **memory**: {servers.get('memory', {}).get('label', 'memory:// + WARNING')}; "
                  "the same bare runs:", "", table(head, rows_for(("memory",)))]
    if any("sqlwarn" in s for s in data.get("summary", {}).values()):
        lines += ["", "Breakdown (`--breakdown`) — each default alone, the same bare runs: "
                  + "; ".join(f"**{n}**: {servers.get(n, {}).get('label', '?')}" for n in ("sqlwarn", "meminfo"))
                  + ". sqlwarn's gap to memory is what the SQLite store costs, meminfo's what the per-message line "
                  "costs.", "", table(head, rows_for(("sqlwarn", "meminfo")))]
    logs = data.get("log_lines") or {}
    if logs:
        lines += ["", "Per-message INFO lines in the log: " + ", ".join(
            f"{n} {v.get('lines')} for {v.get('answered')} answered messages" for n, v in logs.items())]
    runs = data.get("runs", [])
    if runs:
        plt = _plt()
        modes = sorted({r["mode"] for r in runs})
        servers = list(dict.fromkeys(r["server"] for r in runs))
        fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4), squeeze=False)
        for ax, mode in zip(axes[0], modes):
            for i, server in enumerate(servers):
                sel = [r for r in runs if r["mode"] == mode and r["server"] == server]
                for q, marker in (("p50_ms", "o"), ("p99_ms", "^")):
                    ax.scatter([i + (0.12 if q == "p99_ms" else -0.12)] * len(sel), [r[q] for r in sel], marker=marker,
                               label=q.split("_")[0] if i == 0 else None, color="C0" if q == "p50_ms" else "C3")
            ax.set_xticks(range(len(servers)), servers)
            ax.set_title(f"webhook, {mode}: latency per round")
            ax.set_ylabel("ms")
            ax.grid(axis="y", alpha=0.3)
            ax.legend()
        lines += save_plot(fig, out_dir, "webhook_latency.png", plots,
                           "wrk reports percentiles, not single requests: each point is one round's p50 (●) or p99 (▲).")
    return "\n".join(lines)


def instructions_section(data: dict[str, Any], out_dir: Path, plots: list[str]) -> str:
    variants = data.get("variants") or {"default": data.get("results", {})}
    labels = data.get("labels", {})
    rows = [[mode, variant, r["bare_instructions"], r["ours_instructions"], fmt(r["ratio"], 2)]
            for variant, res in variants.items() for mode, r in res.items()]
    return "\n".join([f"Command: `{COMMANDS['webhook_instructions']}` — callgrind, each app's WSGI callable in process, "
                      f"{data.get('requests', '?')} vs {3 * data.get('requests', 0)} requests (the difference is per "
                      "request; start-up cancels out). Instruction counts do not move with other processes' load. "
                      "Ours: " + "; ".join(f"**{v}**: {labels.get(v, v)}" for v in variants) + ".", "",
                      table(["mode", "ours", "bare instructions/req", "ours instructions/req", "bare ÷ ours"], rows)])


def voice_section(data: dict[str, Any], out_dir: Path, plots: list[str]) -> str:
    lines = [f"Command: `{COMMANDS['voice']}`.", "", "Transcode (AMR-NB 8 kHz → mp3 16 kHz mono), median, one core:", ""]
    rows = [[k.removeprefix("transcode_"), v["ours_s"] * 1000, v["bare_s"] * 1000, v["x_realtime"],
             fmt(v["ours_s"] / v["bare_s"], 2) if v.get("bare_s") else None]
            for k, v in data.items() if k.startswith("transcode_")]
    lines += [table(["clip", "ours ms", "bare ms", "× realtime", "ours ÷ bare"], rows), "",
              "Whole voice message (safe mode, in-process bot, sandbox in another process); bot = wall − injected "
              "recognition latency − the sandbox's own handling time:", ""]
    rows, series = [], []
    for k, v in data.items():
        if not k.startswith("pipeline_"):
            continue
        label = k.removeprefix("pipeline_").replace("_latency", ", latency ") + " s"
        rows.append([label, v.get("messages"), v["wall_p50"] * 1000, v["bot_p50"] * 1000, v["bot_p99"] * 1000,
                     v["bare_p50"] * 1000])
        series.append((label, v))
    lines.append(table(["clip, recognition latency", "messages", "wall p50 ms", "bot p50 ms", "bot p99 ms",
                        "bare transcode p50 ms"], rows))
    fallback = data.get("fallback") or []
    if fallback:
        lines += ["", "WeChat's recognition dead, a 1 s speech service after it, WeChat's 5 s tries played over HTTP "
                      "(\"main's code\": is_end ignored, the whole window for WeChat's recognizer):", "",
                  table(["code", "WeChat's recognition", "fallback", "WeChat's share s", "answered at s (median)",
                         "came in", "the user read"],
                        [[r["code"], r["wechat_answers"], "1 s" if r["fallback"] else "none", r["share_s"],
                          r["answered_s_p50"], ", ".join(sorted(set(r["tries"]))), r["answer"]] for r in fallback])]
    if series:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(8, 4))
        if all("bot_s" in v for _, v in series):
            ax.boxplot([[x * 1000 for x in v["bot_s"]] for _, v in series], showfliers=True)
            note = "per-message distribution of the bot's own time"
        else:
            xs = range(len(series))
            ax.bar([x - 0.2 for x in xs], [v["bot_p50"] * 1000 for _, v in series], width=0.4, label="p50")
            ax.bar([x + 0.2 for x in xs], [v["bot_p99"] * 1000 for _, v in series], width=0.4, label="p99")
            ax.set_xticks(list(xs))
            ax.legend()
            note = "p50/p99 of the bot's own time (this JSON has no per-message values)"
        ax.set_xticklabels([label for label, _ in series], rotation=15)
        ax.set_ylabel("ms")
        ax.set_title("voice message: bot time (wall − recognition latency − sandbox)")
        ax.grid(axis="y", alpha=0.3)
        lines += save_plot(fig, out_dir, "voice_latency.png", plots, f"Plot: {note}.")
    return "\n".join(lines)


def delivery_section(data: dict[str, Any], out_dir: Path, plots: list[str]) -> str:
    lines = [f"Command: `{COMMANDS['delivery']}` — {data.get('messages')} voice messages over {data.get('ramp_s')} s, "
             f"recognition latency {data.get('recognition_latency_s')} s, clips of {data.get('clip_s')} s, "
             f"{data.get('workers')} {data.get('worker_class')} workers × {data.get('threads_per_worker')} threads, "
             f"store {data.get('store')}.", ""]
    rows = [[k, data.get(k)] for k in ("peak_in_flight", "wall_s", "passive_share", "customer_service", "p50_s",
                                       "p99_s", "max_s", "duplicates", "lost", "wrong", "error_shown", "unfinished",
                                       "still_running_at_end")]
    rows.append(["tries (count of messages)", ", ".join(f"{k} tries: {v}" for k, v in sorted(data.get("tries", {}).items()))])
    rss = data.get("worker_rss_mb") or {}
    if rss:
        rows.append(["worker RSS MB (idle → peak)", ", ".join(f"{v.get('idle')} → {v.get('peak')}" for v in rss.values())])
    cpu = data.get("cpu_s") or {}
    if cpu:
        rows.append(["CPU s (workers; sandbox; load generator)", f"{cpu.get('workers')}; {cpu.get('sandbox')}; "
                                                                 f"{cpu.get('load_generator')}"])
    lines.append(table(["measure", "value"], [[k, fmt(v, 3) if isinstance(v, float) else str(v)] for k, v in rows]))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    answered = data.get("answered_s")
    if answered:
        ax.hist(answered, bins=min(40, max(5, len(answered) // 5)), color="C0")
        ax.axvline(data.get("p50_s") or statistics.median(answered), color="k", ls="--", label="p50")
        ax.axvline(data.get("p99_s") or pct(answered, 0.99), color="C3", ls="--", label="p99")
        ax.set_xlabel("seconds from the first try to the answer the user saw")
        ax.set_ylabel("messages")
        note = "per-message distribution (passive answers)"
    else:
        names = [k for k in ("p50_s", "p99_s", "max_s") if data.get(k) is not None]
        ax.bar(names, [data[k] for k in names], color=["C0", "C3", "C1"][: len(names)])
        ax.set_ylabel("seconds")
        note = "p50/p99/max only (this JSON has no per-message values)"
    ax.set_title(f"delivery: time to answer, recognition latency {data.get('recognition_latency_s')} s")
    ax.legend() if answered else None
    ax.grid(axis="y", alpha=0.3)
    lines += save_plot(fig, out_dir, "delivery_latency.png", plots, f"Plot: {note}.")
    return "\n".join(lines)


def pickup_section(data: dict[str, Any], out_dir: Path, plots: list[str]) -> str:
    low, high = (data.get("answer_s") or [None, None])[:2]
    lines = [f"Command: `{COMMANDS['delivery_pickup']}` — {data.get('messages')} users on an account without the "
             f"customer-service API (48001), each with a text answer of {low}-{high} s (past WeChat's three tries), "
             f"writing again {data.get('think_s')} s after the pickup notice; {data.get('workers')} "
             f"{data.get('worker_class')} workers × {data.get('threads_per_worker')} threads, store "
             f"{data.get('store')}. \"ready\" is when the answer was kept in the store; the user's think time is "
             "most of \"ready → shown\".", ""]
    rows = [[k, data.get(k)] for k in ("wall_s", "pickup_share", "picked_up_by_next_message", "picked_up_later",
                                       "notice_share", "lost", "duplicates", "wrong", "unfinished",
                                       "customer_service_sent", "still_running_at_end", "ready_to_shown_p50_s",
                                       "ready_to_shown_p99_s", "push_to_shown_p50_s", "push_to_shown_p99_s",
                                       "next_reply_p50_s", "next_reply_p99_s")]
    rows.append(["records (state/via)", ", ".join(f"{k}: {v}" for k, v in (data.get("records") or {}).items())])
    lines.append(table(["measure", "value"], [[k, fmt(v, 3) if isinstance(v, float) else str(v)] for k, v in rows]))
    return "\n".join(lines)


def overload_section(data: dict[str, Any], out_dir: Path, plots: list[str]) -> str:
    lines = [f"Command: `{COMMANDS['delivery_overload']}` — per account kind, gunicorn as packaged "
             "(gunicorn.conf.py, nothing overridden), a baseline the threads carry, then a burst larger than them; "
             f"recognition {data.get('recognition_latency_s')} s, then a handler of {data.get('handler_s')} s; "
             "every message played by WeChatRetryClient. Paths: how the user read the answer; p50/p95 from the "
             "push to it; the bot's columns from its bot.message lines.", ""]
    rows = []
    for kind in data.get("kinds", []):
        g = kind.get("gunicorn") or {}
        for name in ("baseline", "burst"):
            ph = kind.get(name)
            if not ph:
                continue
            bot = ph.get("bot_lines") or {}
            rows.append([kind.get("account"), f"{name} {ph.get('messages')} / {ph.get('ramp_s')} s",
                         f"{g.get('workers')} × {g.get('threads')}",
                         ", ".join(f"{k} {v}" for k, v in (ph.get("by_path") or {}).items()),
                         ph.get("lost"), ph.get("duplicates"), ph.get("wrong"), ph.get("error_banner"),
                         ph.get("notice_shown"), f"{fmt(ph.get('p50_s'), 2)} / {fmt(ph.get('p95_s'), 2)}",
                         bot.get("withheld"), f"{bot.get('queued')} (max {fmt(bot.get('queued_max_s'), 2)} s)",
                         ph.get("overloaded_warnings")])
    lines.append(table(["account", "run", "workers × threads", "answered by", "lost", "twice", "wrong",
                        "WeChat's error", "notice", "p50 / p95 s", "withheld", "first tries queued",
                        "warnings"], rows))
    return "\n".join(lines)


def write_report(json_dir: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    m = machine()
    plots: list[str] = []
    parts = ["# Benchmark report", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `python benchmarks/report.py` from "
             "`benchmarks/out/*.json` (`make bench` runs every benchmark, then this).", "",
             "## Machine", "",
             table(["", ""], [["CPUs (nproc / usable)", f"{m['nproc']} / {m['usable_cpus']}"], ["CPU model", m["cpu"]],
                              ["memory", f"{m['memory_gib']} GiB"], ["Python", m["python"]],
                              ["platform", m["platform"]], ["load average when the report was written",
                                                            ", ".join(map(str, m["loadavg"]))]]), "",
             "Packages: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), "",
             "## Commands", "", "```sh", "make bench   # installs the bench extra (matplotlib), then:",
             *COMMANDS.values(), "python benchmarks/report.py", "```", ""]
    for name, title, section in (("webhook", "Webhook throughput (text push, gunicorn, loopback)", webhook_section),
                                 ("webhook_instructions", "Webhook cost in instructions (in process)",
                                  instructions_section),
                                 ("voice", "Voice pipeline", voice_section),
                                 ("delivery", "Delivery under load (WeChat's retries, real sandbox)", delivery_section),
                                 ("delivery_pickup", "Delivery without customer service: pickup (answers past 15 s)",
                                  pickup_section),
                                 ("delivery_overload", "Delivery under overload (a burst past the threads)",
                                  overload_section)):
        data, source = load(json_dir, name)
        parts += [f"## {title}", "", f"Source: {source}.", ""]
        if data is not None:
            machine_note = data.get("machine") if isinstance(data.get("machine"), dict) else None
            if machine_note:
                parts += [f"Recorded on: {machine_note.get('nproc')} CPUs, {machine_note.get('cpu')}, "
                          f"Python {machine_note.get('python')}, load average at start "
                          f"{[round(x, 2) for x in machine_note.get('loadavg_at_start', [])]}.", ""]
            parts.append(section(data, out_dir, plots))
        parts.append("")
    report = out_dir / "REPORT.md"
    report.write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {report} and {', '.join(plots) or 'no plots'}")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json-dir", type=Path, default=BENCH_DIR / "out")
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR, help="where REPORT.md and the PNGs go")
    args = ap.parse_args(argv)
    write_report(args.json_dir, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
