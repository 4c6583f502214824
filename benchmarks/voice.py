"""Voice pipeline benchmark: transcode speed, and the bot's whole time per voice message.

For 10 s and 60 s AMR clips it reports, in one run:
  - transcode speed (``bot.voice.audio.transcode_to_mp3``) as a multiple of real time, one core;
  - a bare PyAV decode-and-encode of the same clip (the least anyone could do), as the baseline;
  - the bot's whole time per voice message (signed+encrypted push → token → media/get → transcode →
    addvoicetorecofortext → queryrecoresultfortext → router → encrypted reply), in-process, against the
    sandbox running as a separate process, with the sandbox's injected latency and its own handling
    time (it decodes every upload to decide the transcript) subtracted. p50 and p99.
Target: transcode >= 150x real time; whole-message p50 <= 1.2x the bare transcode.

And, with WeChat's recognition dead (issue 19), when the user gets the answer and at which of WeChat's tries: the
bot served over HTTP, WeChat played by ``WeChatRetryClient`` (5 s per try, three tries), a speech service that takes
1 s (the sandbox's /v1/audio/transcriptions), for a recognition that answers empty-and-final (a retired account) and
one that never answers, with and without the fallback. "main's code" runs in the same run: main ignored ``is_end``
(an empty result meant "not ready") and let WeChat's recognizer use the whole 10 s window even with a fallback after
it; the same bot facing a recognition that answers without ``is_end`` with ``wechat_share_s`` = the window does
exactly that.

    .venv/bin/python benchmarks/voice.py [--messages 30] [--quick] [--fallback-only]
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import av
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.core.loading import load_router  # noqa: E402
from bot.core.router import Router  # noqa: E402
from bot.runtime import build_webhook  # noqa: E402
from bot.testing import BotClient, WeChatRetryClient, test_config  # noqa: E402
from bot.testing.net import free_port, wait_until_up  # noqa: E402
from bot.voice.audio import transcode_to_mp3  # noqa: E402
from bot.voice.tones import make_tone  # noqa: E402


def bare_transcode(data: bytes, fmt: str = "mp3") -> bytes:
    """The least possible: decode, resample to mono, encode, one pass — ``mp3``: 16 kHz with ours's encoder
    settings (LAME's fastest quality, 32 kbit/s); ``amr``: AMR-NB 8 kHz 12.2 kbit/s (voice replies), so the
    ratio shows what everything else costs."""
    codec, rate, bit_rate, sample_format, options = {
        "mp3": ("libmp3lame", 16000, 32000, "s16p", {"compression_level": "9"}),
        "amr": ("libopencore_amrnb", 8000, 12200, "s16", {}),
    }[fmt]
    out = io.BytesIO()
    with av.open(io.BytesIO(data)) as src, av.open(out, "w", format=fmt) as dst:
        stream = dst.add_stream(codec, rate=rate, options=options)
        stream.layout = "mono"
        stream.bit_rate = bit_rate
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
        for frame in src.decode(audio=0):
            for f in resampler.resample(frame):
                for packet in stream.encode(f):
                    dst.mux(packet)
        for f in resampler.resample(None):
            for packet in stream.encode(f):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out.getvalue()


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]




def start_sandbox(latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bot", "sandbox", "--port", str(port), "--latency", str(latency),
                             "--window", "10"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/sandbox/calls", proc, timeout=10)
    except RuntimeError as exc:
        proc.kill()
        raise SystemExit(f"sandbox did not start: {exc}") from None
    return proc, url


def pipeline(url: str, seconds: float, messages: int, latency: float, poll_initial_s: float) -> dict[str, Any]:
    router = Router("bench")
    router.intent("(?P<all>.+)")(lambda ctx, all: f"heard {all}")
    config = test_config(wechat={"appid": "wxsandbox", "appsecret": "sandbox-secret", "api_base_url": url},
                         voice={"poll_initial_s": poll_initial_s, "window_s": 10.0},
                         logging={"level": "WARNING"})
    client = BotClient(build_webhook(config, router))
    clip = requests.post(f"{url}/sandbox/voices", json={"text": "打开客厅的灯", "duration_s": seconds}, timeout=30).json()
    source = requests.get(f"{url}/cgi-bin/media/get", params={"media_id": clip["media_id"], "access_token": "x"})
    client.voice(clip["media_id"])  # warm up: token fetch, connection pool, codecs
    bot, bare, wall = [], [], []
    amr = make_tone(clip["frequency"], seconds, fmt="amr")
    for _ in range(messages):
        before = len(requests.get(f"{url}/sandbox/calls", timeout=5).json())
        started = time.perf_counter()
        reply = client.voice(clip["media_id"])
        elapsed = time.perf_counter() - started
        assert reply.content == "heard 打开客厅的灯", reply
        calls = requests.get(f"{url}/sandbox/calls", timeout=5).json()[before:]
        sandbox_s = sum(c.get("ms", 0.0) for c in calls) / 1000
        wall.append(elapsed)
        bot.append(elapsed - latency - sandbox_s)
        bare.append(timed(bare_transcode, amr))
    del source
    return {"wall_p50": statistics.median(wall), "bot_p50": statistics.median(bot), "bot_p99": pct(bot, 0.99),
            "bare_p50": statistics.median(bare), "messages": messages,
            "wall_s": wall, "bot_s": bot}  # per message, for the report's plot


# (label, what WeChat's recognition answers, fallback?, wechat_share_s; None: the default)
FALLBACK_SCENARIOS = [
    ("main's code", "empty and final", True, 10.0),
    ("this version", "empty and final", True, None),
    ("this version", "never final", True, None),
    ("main's code", "empty and final", False, 10.0),
    ("this version", "empty and final", False, None),
]
RECOGNITION = {"empty and final": {"recognition_retired": True, "recognition_is_end": True},
               # main's reading of an empty-and-final answer, and what an account that never answers sends
               "never final": {"recognition_retired": True, "recognition_is_end": False}}


def serve(app: Any) -> tuple[str, Any]:
    """``app`` on a threaded werkzeug server on a free port: WeChat's tries need real sockets and timeouts."""
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/wechat", server


def fallback_timing(url: str, messages: int) -> list[dict[str, Any]]:
    """Each scenario: ``messages`` voice messages played with WeChat's retries; when the user saw the answer."""
    from bot.web.app import create_app
    for noisy in ("werkzeug", "bot"):  # request lines and the failed recognizers' warnings: the table says it all
        logging.getLogger(noisy).setLevel(logging.ERROR)
    rows = []
    for label, answers, fallback, share in FALLBACK_SCENARIOS:
        main_reading = label == "main's code"
        settings = {**RECOGNITION["never final" if main_reading else answers], "transcription_latency_s": 1.0}
        requests.post(f"{url}/sandbox/config", json=settings, timeout=5).raise_for_status()
        voice: dict[str, Any] = {"recognizers": ["push", "wechat", "openai"] if fallback else ["push", "wechat"],
                                 "openai": {"url": url}, "window_s": 10.0}
        if share is not None:
            voice["wechat_share_s"] = share
        config = test_config(wechat={"appid": "wxsandbox", "appsecret": "sandbox-secret", "api_base_url": url},
                             voice=voice, logging={"level": "WARNING"}, server={"path": "/wechat"})
        bot_url, server = serve(create_app(config, load_router("handlers.lights:router")))
        client = WeChatRetryClient(config, bot_url, url, settle_s=0.0)
        times, tries, answers_seen = [], [], []
        try:
            for _ in range(messages):
                clip = requests.post(f"{url}/sandbox/voices", json={"text": "打开客厅的灯"}, timeout=10).json()
                seen = client.voice(clip["media_id"], recognition="", openid=f"obench{time.time_ns()}")
                times.append(seen.answered_s or seen.elapsed)
                tries.append(f"try {len(seen.statuses)}" if seen.passive else
                             f"customer service after try {len(seen.statuses)}" if seen.customer_service else "none")
                answers_seen.append(seen.answers[0] if seen.answers else "(nothing)")
        finally:
            server.shutdown()
        row = {"code": label, "wechat_answers": answers, "fallback": fallback,
               "share_s": share if share is not None else config.voice.wechat_share_s,
               "answered_s_p50": statistics.median(times), "answered_s": times, "tries": tries,
               "answer": answers_seen[0]}
        rows.append(row)
        print(f"{label:>13} | {answers:>15} | {'1 s service' if fallback else 'none':>11} | "
              f"{row['share_s']:>5g} s | {row['answered_s_p50']:>6.2f} s | {', '.join(sorted(set(tries))):>10} | "
              f"{row['answer']}", flush=True)
    requests.post(f"{url}/sandbox/reset", json={"settings": True}, timeout=5)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=30, help="voice messages per clip length (60 s: a third)")
    parser.add_argument("--quick", action="store_true", help="smoke run: few repetitions")
    parser.add_argument("--fallback-only", action="store_true",
                        help="only the dead-recognition table (WeChat's recognition retired, a 1 s fallback)")
    args = parser.parse_args()
    reps = 3 if args.quick else 15
    messages = 3 if args.quick else args.messages
    print(f"# voice benchmark — {platform.python_version()}, PyAV {av.__version__}, {os.cpu_count()} cores, "
          f"{platform.machine()}")
    print(f"# command: {' '.join([Path(sys.executable).name] + sys.argv)}\n")
    out = ROOT / "benchmarks" / "out"
    saved = out / "voice.json"
    results: dict[str, Any] = {}
    if args.fallback_only and saved.exists():  # keep the other tables of an earlier full run
        results = json.loads(saved.read_text())
    if not args.fallback_only:
        transcode_and_pipeline(results, reps, messages)
    print("\nWeChat's recognition dead, a 1 s speech service after it (WeChat's 5 s tries played over HTTP); "
          "when the user saw the answer, median of", 1 if args.quick else 3, "messages")
    print(f"{'code':>13} | {'WeChat answers':>15} | {'fallback':>11} | {'share':>7} | {'answer':>8} | "
          f"{'came in':>10} | what the user read")
    proc, url = start_sandbox(0.3)
    try:
        results["fallback"] = fallback_timing(url, 1 if args.quick else 3)
    finally:
        proc.terminate()
        proc.wait(5)
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


def transcode_and_pipeline(results: dict[str, Any], reps: int, messages: int) -> None:
    """The transcode table and the whole-message table (see the module docstring)."""
    print("transcode (AMR-NB 8 kHz → mp3 16 kHz mono), median of", reps, "runs, one core")
    print(f"{'clip':>6} {'ours ms':>9} {'x realtime':>11} {'bare ms':>9} {'bare x rt':>10} {'ours/bare':>10}")
    for seconds in (10, 60):
        amr = make_tone(440, seconds, fmt="amr")
        ours, bare = [], []
        for _ in range(reps if seconds == 10 else max(3, reps // 2)):
            ours.append(timed(transcode_to_mp3, amr))
            bare.append(timed(bare_transcode, amr))
        o, b = statistics.median(ours), statistics.median(bare)
        results[f"transcode_{seconds}s"] = {"ours_s": o, "bare_s": b, "x_realtime": seconds / o}
        print(f"{seconds:>5}s {o*1000:>9.1f} {seconds/o:>10.0f}x {b*1000:>9.1f} {seconds/b:>9.0f}x {o/b:>10.2f}")

    print("\nwhole voice message (safe mode, in-process bot, sandbox in another process)")
    print("bot = wall − injected latency − sandbox's own handling time")
    print(f"{'clip':>6} {'latency':>8} {'n':>4} {'wall p50':>9} {'bot p50':>9} {'bot p99':>9} {'bare p50':>9} "
          f"{'p50/bare':>9}")
    for latency, poll in ((0.0, 0.0), (1.0, 0.2)):
        proc, url = start_sandbox(latency)
        try:
            for seconds in (10, 60):
                n = messages if seconds == 10 else max(3, messages // 3)
                r = pipeline(url, seconds, n, latency, poll)
                results[f"pipeline_{seconds}s_latency{latency:g}"] = r
                print(f"{seconds:>5}s {latency:>7.1f}s {n:>4} {r['wall_p50']*1000:>8.1f}ms {r['bot_p50']*1000:>7.1f}ms "
                      f"{r['bot_p99']*1000:>7.1f}ms {r['bare_p50']*1000:>7.1f}ms {r['bot_p50']/r['bare_p50']:>9.2f}")
        finally:
            proc.terminate()
            proc.wait(5)
    print("\nlatency 0 rows: the target (everything but the transcode should cost almost nothing). latency 1.0 s rows: "
          "the default schedule polls after 0.2 s, backing off ×1.5 to every 0.5 s; the overshoot past the latency is "
          "polling granularity, counted in 'bot'.")


if __name__ == "__main__":
    sys.exit(main())
