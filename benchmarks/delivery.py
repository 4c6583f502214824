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

``--pickup``: an account WITHOUT the customer-service API (the sandbox answers 48001, like an unverified
personal subscription account) and answers past WeChat's 15 s: each of N users asks a question whose handler
answers after 16-20 s (``--answer-s``; text messages, an LLM behind the handler, say), reads the pickup notice
at the last try, and writes again ``--think`` seconds later. Every answer must come with that next message,
first in its reply and followed by the new message's own answer: 0 lost, 0 duplicates. Reported: the pickup
share (answers shown by the next message / messages), the notice share, and the pickup latency: from the
answer being ready (kept in the store) to being shown, from the first push to being shown, and the next
message's own reply time. Written to ``benchmarks/out/delivery_pickup.json``.

    python benchmarks/delivery.py                  # 200 messages, 2 s recognition
    python benchmarks/delivery.py --messages 50 --latency 7
    python benchmarks/delivery.py --pickup         # 100 users, answers of 16-20 s, no customer service
    python benchmarks/delivery.py --overload       # 600 over 2 s on the packaged gunicorn settings, both kinds

``--overload``: a burst larger than the packaged settings' threads, next to a baseline they carry, on an account
with customer service and on one without: see ``benchmarks/_overload.py``. Written to
``benchmarks/out/delivery_overload.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
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

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR.parent), str(BENCH_DIR)]

from _overload import ok as overload_ok  # noqa: E402
from _overload import run_overload  # noqa: E402
from _overload import summary as overload_summary  # noqa: E402
from _rig import (  # noqa: E402
    AES_KEY,
    APPID,
    NOTICE,
    REPO,
    SECRET,
    SENTENCES,
    TOKEN,
    Sampler,
    children,
    cpu_s,
    percentile,
    records,
    rss_kb,
    settle,
    start_gunicorn,
    start_sandbox,
    stop_all,
    write_config,
)
from _rig import mb as _mb  # noqa: E402
from _rig import rnd as _r  # noqa: E402

from bot.config import config_from_dict, load_config  # noqa: E402
from bot.testing import BotClient, WeChatRetryClient, messages  # noqa: E402


def config_options(args: argparse.Namespace) -> dict[str, Any]:
    """What the command line sets in the bot's config (these runs set [reply] threads and the log level)."""
    return {"threads": args.threads, "log_level": args.log_level, "poll_initial": args.poll_initial,
            "poll_max": args.poll_max}


def run(args: argparse.Namespace) -> dict[str, Any]:
    started_procs: list[subprocess.Popen[bytes]] = []
    workdir = Path(tempfile.mkdtemp(prefix="wvb-bench-delivery-"))
    try:
        sandbox_url, sandbox = start_sandbox(args.latency, started_procs)
        clips = [requests.post(f"{sandbox_url}/sandbox/voices", json={"text": t, "duration_s": args.clip},
                               timeout=10).json()["media_id"] for t in SENTENCES]

        config_path = write_config(workdir, sandbox_url, **config_options(args))
        bind, gunicorn = start_gunicorn(workdir, config_path, started_procs, workers=args.workers, threads=args.threads)
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
            user, msg_id = f"obench{i:05d}{os.getpid()}", messages.next_msg_id()
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            try:
                seen = client.voice(clips[i % len(clips)], openid=user, msg_id=msg_id)
            finally:
                with lock:
                    in_flight -= 1
            results[i] = {"openid": user, "msg_id": msg_id, "expected": SENTENCES[i % len(SENTENCES)],
                          "statuses": seen.statuses, "error": seen.error, "passive": [r.content for r in seen.passive],
                          "answered_s": seen.answered_s, "error_shown": seen.error_shown}

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
        lost_detail = where_lost(results, custom, workdir, load_config(config_path))
        end_rss = {pid: rss_kb(pid) for pid in children(gunicorn.pid)}
        used = lambda pid: round((cpu_s(pid) or 0.0) - cpu_before.get(pid, 0.0), 2)  # noqa: E731
        cpu = {"workers": [used(pid) for pid in children(gunicorn.pid)], "sandbox": used(sandbox.pid),
               "load_generator": round(time.process_time() - own_before, 2)}
    finally:
        stop_all(started_procs, workdir, keep=args.keep)

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
        "still_running_at_end": pending, "lost_detail": lost_detail,
        "tries": dict(Counter(len(r["statuses"]) for r in results if r)),
        "worker_rss_mb": {str(pid): {"idle": _mb(idle_rss.get(pid)), "peak": _mb(sampler.peak.get(pid)),
                                     "end": _mb(end_rss.get(pid))} for pid in sorted(set(idle_rss) | set(end_rss))},
        "work_dir": str(workdir) if args.keep else None, "cpu_s": cpu, "loadavg_before": [round(x, 2) for x in load_before], "cpus": os.cpu_count(),
    }


def where_lost(results: list[dict[str, Any]], custom: list[dict[str, Any]], workdir: Path,
               config: Any) -> list[dict[str, Any]]:
    """For each message whose user saw no answer: what the client saw, its delivery record, and the bot's log
    lines that name it — where the answer ended (kept, still running, never recorded)."""
    answered = {m["touser"] for m in custom}
    lost = [r for r in results if r and not r["passive"] and r["openid"] not in answered]
    if not lost:
        return []
    kept = records(config.storage.url, config.storage.prefix, [r["msg_id"] for r in lost])
    try:
        log_lines = (workdir / "gunicorn.log").read_text(errors="replace").splitlines()
    except OSError:
        log_lines = []
    return [{"msg_id": r["msg_id"], "statuses": r["statuses"], "error": r.get("error"),
             "record": {k: v for k, v in (kept.get(r["msg_id"]) or {}).items() if k not in ("push", "answer", "kept")},
             "log": [ln[:300] for ln in log_lines if str(r["msg_id"]) in ln][:12]} for r in lost]


PICKUP_HANDLERS = '''"""The pickup run's handler: ``slow S <sentence>`` answers <sentence> after S seconds; else an echo."""
import time

from bot import Router

router = Router("bench_pickup")


@router.fallback
def answer(ctx):
    text = ctx.original_text or ctx.text or ""
    if text.startswith("slow "):
        _, seconds, sentence = text.split(" ", 2)
        time.sleep(float(seconds))
        return sentence
    return text
'''
def answer_range(spec: str) -> tuple[float, float]:
    low, _, high = spec.partition("-")
    return float(low), float(high or low)


def run_pickup(args: argparse.Namespace) -> dict[str, Any]:
    """N users on an account without customer service, each with an answer past WeChat's 15 s; each reads the
    notice, writes again ``--think`` s later, and must find the earlier answer first in that reply."""
    low, high = answer_range(args.answer_s)
    rng = random.Random(args.seed)
    n = args.messages
    delays = [round(rng.uniform(low, high), 2) for _ in range(n)]
    started_procs: list[subprocess.Popen[bytes]] = []
    workdir = Path(tempfile.mkdtemp(prefix="wvb-bench-pickup-"))
    try:
        sandbox_url, _ = start_sandbox(0.3, started_procs, customer_service=False)
        (workdir / "handlers").mkdir()
        (workdir / "handlers" / "bench_pickup.py").write_text(PICKUP_HANDLERS, encoding="utf-8")
        config_path = write_config(workdir, sandbox_url, routers="bench_pickup:router", search_paths=["handlers"],
                                   **config_options(args))
        bot_config = load_config(config_path)
        bind, _ = start_gunicorn(workdir, config_path, started_procs, workers=args.workers, threads=args.threads)

        url = f"http://{bind}/wechat"
        results: list[dict[str, Any]] = [{} for _ in range(n)]

        def one(i: int, start_at: float) -> None:
            time.sleep(max(0.0, start_at - time.monotonic()))
            user, msg_id = f"opickup{i:05d}{os.getpid()}", messages.next_msg_id()
            expected = SENTENCES[i % len(SENTENCES)]
            pushed = time.time()
            first = WeChatRetryClient(bot_config, url, wait_s=5.0, tries=3).text(
                f"slow {delays[i]} {expected}", openid=user, msg_id=msg_id)
            time.sleep(args.think)  # the user read the notice, and writes again
            follow = f"第{i}号的下一条"
            sent = time.time()
            nxt = WeChatRetryClient(bot_config, url, wait_s=5.0, tries=3).text(follow, openid=user)
            later: list[str] = []
            # not there? the user writes again, a few times, to tell an answer picked up late from a lost one
            while expected not in "".join([*nxt.answers, *later]) and len(later) < 3:
                time.sleep(3.0)
                later.append(BotClient(bot_config, url=url, openid=user).text(f"还在吗{len(later)}").content or "")
            results[i] = {"msg_id": msg_id, "pushed": pushed, "expected": expected, "follow": follow,
                          "first_statuses": first.statuses, "first_answers": first.answers,
                          "next_statuses": nxt.statuses, "next_answers": nxt.answers, "next_reply_s": nxt.answered_s,
                          "shown": sent + nxt.answered_s if nxt.answered_s is not None else None, "later": later}

        t0 = time.monotonic() + 0.5
        threads = [threading.Thread(target=one, args=(i, t0 + args.ramp * i / max(1, n - 1)), daemon=True)
                   for i in range(n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + args.timeout + high + args.think
        for t in threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        wall = time.monotonic() - t0
        pending = settle(workdir / "state.db", args.settle_max)
        custom = requests.get(f"{sandbox_url}/sandbox/messages", timeout=10).json()
        kept = records(bot_config.storage.url, bot_config.storage.prefix, [r["msg_id"] for r in results if r])
    finally:
        stop_all(started_procs, workdir, keep=args.keep)

    notice = by_next = later_n = lost = dup = wrong = unfinished = 0
    ready_to_shown: list[float] = []
    push_to_shown: list[float] = []
    next_reply: list[float] = []
    for r in results:
        if not r:
            unfinished += 1
            continue
        shown = [*r["first_answers"], *r["next_answers"], *r["later"]]
        count = sum(text.split("\n\n").count(r["expected"]) for text in shown)  # every answer shown, anywhere
        notice += r["first_answers"] == [NOTICE] and r["first_statuses"][-1:] == ["reply"]
        dup += count > 1
        lost += count == 0
        if r["next_answers"] == [f"{r['expected']}\n\n{r['follow']}"]:  # the kept answer, then the new one
            by_next += 1
            kept_at = (kept.get(r["msg_id"]) or {}).get("kept")
            if r["shown"] is not None and kept_at:
                ready_to_shown.append(r["shown"] - kept_at)
            if r["shown"] is not None:
                push_to_shown.append(r["shown"] - r["pushed"])
        elif count == 1:
            later_n += 1
        allowed = {r["expected"], r["follow"], NOTICE, *(f"还在吗{k}" for k in range(len(r["later"])))}
        wrong += any(part not in allowed for text in shown for part in text.split("\n\n"))  # another's answer
        if r["next_reply_s"] is not None:
            next_reply.append(r["next_reply_s"])
    states = Counter(f"{v.get('state')}/{v.get('via')}" for v in kept.values())
    med = lambda xs: _r(statistics.median(xs) if xs else None)  # noqa: E731
    return {
        "run": "pickup", "account": "no customer service (48001)", "messages": n, "answer_s": [low, high],
        "think_s": args.think, "ramp_s": args.ramp, "seed": args.seed, "workers": args.workers,
        "threads_per_worker": args.threads, "store": "sqlite", "worker_class": "gthread", "wall_s": round(wall, 2),
        "pickup_share": round(by_next / n, 4), "picked_up_by_next_message": by_next, "picked_up_later": later_n,
        "notice_shown": notice, "notice_share": round(notice / n, 4), "lost": lost, "duplicates": dup,
        "wrong": wrong, "unfinished": unfinished, "customer_service_sent": len(custom),
        "still_running_at_end": pending, "records": dict(states),
        "ready_to_shown_p50_s": med(ready_to_shown), "ready_to_shown_p99_s": _r(percentile(ready_to_shown, 0.99)),
        "push_to_shown_p50_s": med(push_to_shown), "push_to_shown_p99_s": _r(percentile(push_to_shown, 0.99)),
        "next_reply_p50_s": med(next_reply), "next_reply_p99_s": _r(percentile(next_reply, 0.99)),
        "ready_to_shown_s": sorted(_r(x) for x in ready_to_shown),
        "push_to_shown_s": sorted(_r(x) for x in push_to_shown),
        "work_dir": str(workdir) if args.keep else None, "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def summary(result: dict[str, Any], argv: list[str]) -> str:
    """The command that ran and its medians, for the terminal (the JSON above has everything)."""
    command = " ".join(["python benchmarks/delivery.py", *map(shlex.quote, argv)])
    if result.get("run") == "pickup":
        return "\n".join([
            f"command: {command}",
            f"pickup (no customer service, answers of {result['answer_s'][0]:g}-{result['answer_s'][1]:g} s, "
            f"{result['messages']} users writing again {result['think_s']:g} s after the notice):",
            f"  pickup share {result['pickup_share']:.3f} ({result['picked_up_by_next_message']}/{result['messages']}"
            f" picked up by the next message, {result['picked_up_later']} later), notice share "
            f"{result['notice_share']:.3f}, lost {result['lost']}, duplicates {result['duplicates']}, "
            f"wrong {result['wrong']}",
            f"  median answer ready -> shown {result['ready_to_shown_p50_s']} s (p99 {result['ready_to_shown_p99_s']}),"
            f" push -> shown {result['push_to_shown_p50_s']} s (p99 {result['push_to_shown_p99_s']}),"
            f" next message's reply {result['next_reply_p50_s']} s (p99 {result['next_reply_p99_s']})"])
    return "\n".join([
        f"command: {command}",
        f"load ({result['messages']} voice messages, recognition {result['recognition_latency_s']:g} s): passive share "
        f"{result['passive_share']:.3f}, lost {result['lost']}, duplicates {result['duplicates']}, wrong "
        f"{result['wrong']}",
        f"  median time to the answer {result['p50_s']} s (p99 {result['p99_s']})",
        *[f"  lost msg_id={d['msg_id']}: tries {d['statuses']} ({d['error']}), record {d['record'] or 'none'}; "
          f"log: {' | '.join(d['log']) or 'nothing'}" for d in result.get("lost_detail", [])]])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, help="messages (default 200; with --pickup 100 users)")
    ap.add_argument("--latency", type=float, default=2.0, help="recognition latency in the sandbox, seconds")
    ap.add_argument("--ramp", type=float, default=2.0, help="start the messages over this many seconds")
    ap.add_argument("--clip", type=float, default=1.0, help="length of each voice clip, seconds")
    ap.add_argument("--poll-initial", type=float, help="[voice] poll_initial_s (default: the bot's)")
    ap.add_argument("--poll-max", type=float, help="[voice] poll_max_s (default: the bot's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=160, help="gunicorn threads and [reply] threads per worker")
    ap.add_argument("--settle-max", type=float, default=90.0, help="wait this long at most for late jobs (only while some still run)")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--pickup", action="store_true",
                    help="the pickup run: no customer-service API, answers past 15 s, picked up by the next message")
    ap.add_argument("--answer-s", default="16-20", help="--pickup: the handler answers after LOW-HIGH seconds")
    ap.add_argument("--think", type=float, default=8.0,
                    help="--pickup: the user writes again this long after the notice, seconds")
    ap.add_argument("--seed", type=int, default=11, help="--pickup: for the answer times")
    ap.add_argument("--overload", action="store_true",
                    help="the overload run: a burst larger than gunicorn.conf.py's threads, next to a baseline "
                         "(every other setting the packaged default; --messages/--ramp are the burst)")
    ap.add_argument("--accounts", default="verified,unverified",
                    help="--overload: account kinds, verified (customer service) and/or unverified (48001)")
    ap.add_argument("--handler-s", default="0.5-1.5", help="--overload: the handler answers after LOW-HIGH s")
    ap.add_argument("--base-messages", type=int, default=100, help="--overload: the baseline's messages")
    ap.add_argument("--base-ramp", type=float, default=10.0, help="--overload: the baseline's ramp, seconds")
    ap.add_argument("--follow-ups", type=int, default=4,
                    help="--overload, no customer service: next messages a user sends at most, until the answer")
    ap.add_argument("--log-level", default="WARNING", help="the bot's log level (gunicorn.log in the work dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (config, SQLite file, gunicorn.log)")
    ap.add_argument("--out", help="default benchmarks/out/delivery.json (--pickup: delivery_pickup.json)")
    args = ap.parse_args(argv)
    if args.messages is None:
        args.messages = 600 if args.overload else 100 if args.pickup else 200
    name = "delivery_overload" if args.overload else "delivery_pickup" if args.pickup else "delivery"
    out = Path(args.out or REPO / "benchmarks" / "out" / f"{name}.json")
    if args.overload:
        result = run_overload(args)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
        command = " ".join(["python benchmarks/delivery.py", *map(shlex.quote, argv)])
        print("\n".join([f"command: {command}", *overload_summary(result), f"(all of it: {out})"]))
        return 0 if overload_ok(result) else 1
    result = run_pickup(args) if args.pickup else run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(summary(result, argv))
    ok = result["duplicates"] == 0 and result["lost"] == 0 and result["wrong"] == 0
    if args.pickup:
        ok = ok and result["picked_up_by_next_message"] == result["messages"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
