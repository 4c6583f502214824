"""``benchmarks/delivery.py --overload``: a burst of voice messages larger than the packaged gunicorn settings'
threads, played as WeChat plays it, on each account kind, next to a baseline the threads carry (issue 21).

Per account kind (``verified``: the customer-service API; ``unverified``: the sandbox answers 48001) one sandbox
and one gunicorn started as README "Deploying" says — ``gunicorn -c gunicorn.conf.py`` with nothing overridden
(2 workers × 64 threads, ``[reply] threads`` 32, SQLite, INFO) — then two phases on it: the **baseline**
(``--base-messages`` over ``--base-ramp`` s, a load the threads carry) and the **burst** (``--messages`` over
``--ramp`` s). Every message is its own MsgId, from its own user: a real AMR clip the sandbox recognizes in
``--latency`` s, and a handler that then takes ``--handler-s`` (a service or a language model behind it) and
echoes the transcript. Each is played by ``WeChatRetryClient`` (5 s a try, three tries, the same request again).
On the account without customer service a user who did not read the answer writes again ``--think`` s after the
last try, and again (up to ``--follow-ups`` times, 4 s apart) until the answer shows.

What the users saw, per message: answered exactly once, by which path (passive at the first try, at a retry, by
customer service — seen by polling the sandbox every 0.25 s —, with a next message), none twice, none lost, none
wrong, the pickup notice, WeChat's error banner; the time from the push to the answer (p50/p95). What the bot
says: its ``bot.message`` lines (path, ``withheld=true``, ``queued_ms``) and its ``overloaded:`` warnings, and the
records' final states.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from _rig import (
    NOTICE,
    SENTENCES,
    children,
    cpu_s,
    percentile,
    records,
    rnd,
    settle,
    start_gunicorn,
    start_sandbox,
    stop_all,
    write_config,
)
from _servers import gunicorn_settings

from bot.config import load_config
from bot.testing import WeChatRetryClient, messages

ACCOUNTS = {"verified": True, "unverified": False}  # kind -> has the customer-service API
FOLLOW = "还在吗"  # a user's next message; the handler answers it at once (echo)
FIELD = re.compile(r"(\w+)=(\S+)")

HANDLERS = '''"""The overload run's handler: the transcript, echoed after {low:g}-{high:g} s (a service behind it)."""
import random
import time

from bot import Router

router = Router("bench_overload")


@router.fallback
def answer(ctx):
    text = ctx.original_text or ctx.text or ""
    if not text.startswith("{follow}"):
        time.sleep(random.uniform({low!r}, {high!r}))
    return text
'''


class Watcher(threading.Thread):
    """When each customer-service message appeared at the sandbox (polled every 0.25 s: the user's phone)."""

    def __init__(self, sandbox_url: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{sandbox_url}/sandbox/messages"
        self.seen: list[tuple[str, str, float]] = []  # (to user, text, first seen), in the sandbox's order
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.25):
            self.poll()

    def poll(self) -> None:
        try:
            sent = requests.get(self.url, timeout=10).json()
        except (requests.RequestException, ValueError):
            return
        now = time.time()
        self.seen += [(m["touser"], m.get("text", {}).get("content", ""), now) for m in sent[len(self.seen):]]

    def to(self, user: str) -> list[tuple[str, float]]:
        return [(text, at) for touser, text, at in self.seen if touser == user]


def play(name: str, n: int, ramp: float, url: str, config: Any, clips: list[str], customer_service: bool,
         args: argparse.Namespace, watcher: Watcher) -> list[dict[str, Any]]:
    """``n`` users, each sending one voice message (started over ``ramp`` s), with follow-ups without CS."""
    results: list[dict[str, Any]] = [{} for _ in range(n)]
    done = [0]

    def one(i: int, start_at: float) -> None:
        time.sleep(max(0.0, start_at - time.monotonic()))
        user, msg_id = f"o{name}{i:05d}x{os.getpid()}", messages.next_msg_id()
        expected = SENTENCES[i % len(SENTENCES)]
        pushed = time.time()
        seen = WeChatRetryClient(config, url, wait_s=5.0, tries=3).voice(clips[i % len(clips)], openid=user,
                                                                       msg_id=msg_id)
        result = {"msg_id": msg_id, "user": user, "expected": expected, "pushed": pushed, "statuses": seen.statuses,
                  "passive": [r.content or "" for r in seen.passive],
                  "passive_at": pushed + seen.answered_s if seen.passive and seen.answered_s is not None else None,
                  "error_shown": seen.error_shown, "follow": []}
        if not customer_service and expected not in result["passive"]:
            time.sleep(args.think)  # the user read the notice (or the banner) and writes again
            for _ in range(args.follow_ups):
                if write_again(result, url, config):
                    break
                time.sleep(4.0)
        results[i] = result
        done[0] += 1

    t0 = time.monotonic() + 0.5
    threads = [threading.Thread(target=one, args=(i, t0 + ramp * i / max(1, n - 1)), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + ramp + 20 + (0 if customer_service else args.think + 20 * args.follow_ups)
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        time.sleep(5.0)
        print(f"  [{name}] {time.monotonic() - t0:5.1f} s: {done[0]}/{n} users done, "
              f"{len(watcher.seen)} customer-service messages so far", flush=True)
    return results


def write_again(result: dict[str, Any], url: str, config: Any, later: bool = False) -> bool:
    """The user of ``result`` sends a next message (played as WeChat plays it); True when it showed the answer.
    ``later``: once every job has ended (the answer counts as ``pickup_later``)."""
    text = f"{FOLLOW}{len(result['follow'])}"
    sent = time.time()
    nxt = WeChatRetryClient(config, url, wait_s=5.0, tries=3).text(text, openid=result["user"])
    result["follow"].append({"text": text, "answers": nxt.answers, "statuses": nxt.statuses, "later": later,
                             "at": sent + nxt.answered_s if nxt.answered_s is not None else None})
    return any(result["expected"] in a.split("\n\n") for a in nxt.answers)


def still_waiting(results: list[dict[str, Any]], url: str, config: Any) -> int:
    """Once every job has ended: each user without customer service still waiting writes once more (a user who
    comes back later; an answer kept for pickup is there for them). Returns how many wrote."""
    waiting = [r for r in results if r and r["expected"] not in r["passive"]
               and not any(r["expected"] in a.split("\n\n") for f in r["follow"] for a in f["answers"])]
    threads = [threading.Thread(target=write_again, args=(r, url, config, True), daemon=True) for r in waiting]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return len(waiting)


def bot_lines(log: Path) -> dict[str, list[dict[str, str]]]:
    """The ``bot.message`` lines of the run, by msg_id, as their key=value fields."""
    out: dict[str, list[dict[str, str]]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if " bot.message: message " in line:
            fields = dict(FIELD.findall(line.split(" bot.message: message ", 1)[1]))
            out.setdefault(fields.get("msg_id", ""), []).append(fields)
    return out


def judge(results: list[dict[str, Any]], watcher: Watcher, lines: dict[str, list[dict[str, str]]],
          kept: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """What the users saw (paths, exactly once, time to the answer) next to what the bot says."""
    paths: Counter[str] = Counter()
    to_answer: list[float] = []
    dup = lost = wrong = notice = banner = unfinished = 0
    for r in results:
        if not r:
            unfinished += 1
            continue
        shown: list[tuple[str, float | None]] = []  # (path, when) of each time the answer was shown
        texts: list[str] = []
        for text in r["passive"]:
            texts.append(text)
            if text == r["expected"]:
                shown.append(("passive" if len(r["statuses"]) == 1 else "retry", r["passive_at"]))
        for text, at in watcher.to(r["user"]):
            texts.append(text)
            if text == r["expected"]:
                shown.append(("customer_service", at))
        for f in r["follow"]:
            for text in f["answers"]:
                parts = text.split("\n\n")
                texts += parts
                shown += [("pickup" if not f.get("later") else "pickup_later", f["at"])] * parts.count(r["expected"])
        allowed = {r["expected"], NOTICE, *(f["text"] for f in r["follow"])}
        wrong += any(t not in allowed for t in texts)
        notice += NOTICE in r["passive"]
        banner += r["error_shown"]
        dup += len(shown) > 1
        lost += not shown
        if shown:
            path, at = min(shown, key=lambda s: s[1] if s[1] is not None else float("inf"))
            paths[path] += 1
            if at is not None:
                to_answer.append(at - r["pushed"])
    said = [lines.get(str(r["msg_id"]), []) for r in results if r]
    queued = [float(f["queued_ms"]) / 1000 for ls in said for f in ls if "queued_ms" in f]
    n = len(results)
    return {
        "messages": n, "answered_once": sum(paths.values()) - dup, "by_path": dict(paths),
        "passive_share": round(paths["passive"] / n, 4) if n else None,
        "lost": lost, "duplicates": dup, "wrong": wrong, "unfinished": unfinished,
        "notice_shown": notice, "error_banner": banner,
        "p50_s": rnd(statistics.median(to_answer) if to_answer else None), "p95_s": rnd(percentile(to_answer, 0.95)),
        "max_s": rnd(max(to_answer) if to_answer else None),
        "bot_lines": {"paths": dict(Counter(f.get("path", "?") for ls in said for f in ls)),
                      "messages_with_one_line": sum(len(ls) == 1 for ls in said),
                      "withheld": sum(f.get("withheld") == "true" for ls in said for f in ls),
                      "queued": len(queued), "queued_p50_s": rnd(statistics.median(queued) if queued else None),
                      "queued_max_s": rnd(max(queued) if queued else None)},
        "records": dict(Counter(f"{v.get('state')}/{v.get('via')}" for v in kept.values())),
    }


def run_kind(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One account kind: a sandbox, the packaged gunicorn, the baseline phase, then the burst."""
    customer_service = ACCOUNTS[kind]
    low, _, high = args.handler_s.partition("-")
    started: list[subprocess.Popen[bytes]] = []
    workdir = Path(tempfile.mkdtemp(prefix=f"wvb-bench-overload-{kind}-"))
    out: dict[str, Any] = {"account": kind, "customer_service": customer_service}
    try:
        sandbox_url, sandbox = start_sandbox(args.latency, started, customer_service=customer_service)
        clips = [requests.post(f"{sandbox_url}/sandbox/voices", json={"text": t, "duration_s": args.clip},
                               timeout=10).json()["media_id"] for t in SENTENCES]
        (workdir / "handlers").mkdir()
        (workdir / "handlers" / "bench_overload.py").write_text(
            HANDLERS.format(low=float(low), high=float(high or low), follow=FOLLOW), encoding="utf-8")
        config_path = write_config(workdir, sandbox_url, routers="bench_overload:router", search_paths=["handlers"])
        config = load_config(config_path)
        settings, _ = gunicorn_settings(config_path)
        out["gunicorn"] = {k: settings.get(k) for k in ("workers", "threads", "worker_class")}
        out["reply_threads"] = config.reply.threads
        bind, gunicorn = start_gunicorn(workdir, config_path, started)
        url = f"http://{bind}/wechat"
        watcher = Watcher(sandbox_url)
        watcher.start()
        cpu_before = {pid: cpu_s(pid) or 0.0 for pid in [*children(gunicorn.pid), sandbox.pid]}
        phases: dict[str, list[dict[str, Any]]] = {}
        log, warned = workdir / "gunicorn.log", {}
        t0 = time.monotonic()
        for name, n, ramp in (("baseline", args.base_messages, args.base_ramp), ("burst", args.messages, args.ramp)):
            if n <= 0:
                continue
            print(f"[{kind}] {name}: {n} voice messages over {ramp:g} s", flush=True)
            log_from = log.stat().st_size
            phases[name] = play(name, n, ramp, url, config, clips, customer_service, args, watcher)
            still = settle(workdir / "state.db", args.settle_max)
            out.setdefault("still_running_at_end", {})[name] = still
            if not customer_service:
                out.setdefault("came_back_later", {})[name] = still_waiting(phases[name], url, config)
            with log.open("rb") as f:
                f.seek(log_from)
                warned[name] = f.read().decode(errors="replace").count("overloaded: requests waited up to")
        wall = time.monotonic() - t0
        watcher.stop_event.set()
        watcher.join(2)
        watcher.poll()
        used = lambda pid: round((cpu_s(pid) or 0.0) - cpu_before.get(pid, 0.0), 2)  # noqa: E731
        out["cpu_s"] = {"workers": [used(pid) for pid in children(gunicorn.pid)], "sandbox": used(sandbox.pid)}
        out["wall_s"] = round(wall, 1)
        lines = bot_lines(log)
        text = log.read_text(errors="replace")
        out["errors_logged"] = sum(" ERROR " in ln or "Traceback" in ln for ln in text.splitlines())
        for name, results in phases.items():
            kept = records(config.storage.url, config.storage.prefix, [r["msg_id"] for r in results if r])
            out[name] = {"ramp_s": args.base_ramp if name == "baseline" else args.ramp,
                         **judge(results, watcher, lines, kept), "overloaded_warnings": warned.get(name)}
    finally:
        stop_all(started, workdir, keep=args.keep)
    out["work_dir"] = str(workdir) if args.keep else None
    return out


def run_overload(args: argparse.Namespace) -> dict[str, Any]:
    kinds = [k.strip() for k in args.accounts.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ACCOUNTS]
    if unknown:
        raise SystemExit(f"--accounts: unknown {unknown}; choose from {sorted(ACCOUNTS)}")
    return {"run": "overload", "recognition_latency_s": args.latency, "handler_s": args.handler_s,
            "clip_s": args.clip, "think_s": args.think, "store": "sqlite", "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "kinds": [run_kind(kind, args) for kind in kinds]}


def summary(result: dict[str, Any]) -> list[str]:
    """One table per account kind: the baseline and the burst side by side."""
    out = [f"overload (recognition {result['recognition_latency_s']:g} s, handler {result['handler_s']} s; "
           "times from the first push to the answer the user read):"]
    cols = ("messages", "ramp_s", "answered_once", "by_path", "lost", "duplicates", "wrong", "notice_shown", "error_banner",
            "p50_s", "p95_s")
    for kind in result["kinds"]:
        g = kind.get("gunicorn", {})
        out.append(f"  {kind['account']} account (customer service: {'yes' if kind['customer_service'] else 'no'}), "
                   f"gunicorn {g.get('workers')} workers x {g.get('threads')} threads, [reply] threads "
                   f"{kind.get('reply_threads')}; errors logged {kind.get('errors_logged')}"
                   + (f"; users who wrote once more after every job ended: {kind['came_back_later']}"
                      if "came_back_later" in kind else ""))
        for name in ("baseline", "burst"):
            phase = kind.get(name)
            if not phase:
                continue
            shown = ", ".join(f"{c} {phase[c]}" for c in cols)
            bot = phase["bot_lines"]
            out.append(f"    {name:8} {shown}")
            out.append(f"    {'':8} bot says: paths {bot['paths']}, withheld {bot['withheld']}, 'overloaded' warnings "
                       f"{phase['overloaded_warnings']}, first tries queued (>=100 ms) "
                       f"{bot['queued']} (p50 {bot['queued_p50_s']} s, max {bot['queued_max_s']} s); records "
                       f"{phase['records']}")
    return out


def ok(result: dict[str, Any]) -> bool:
    phases = [k[name] for k in result["kinds"] for name in ("baseline", "burst") if k.get(name)]
    return all(p["lost"] == 0 and p["duplicates"] == 0 and p["wrong"] == 0 and p["unfinished"] == 0 for p in phases)
