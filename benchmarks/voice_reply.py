"""Voice reply benchmark: from a synthesizer's audio to WeChat voice media, against a bare PyAV transcode.

For 5 s, 60 s and 150 s of speech (the sandbox's /v1/audio/speech, mp3 as OpenAI answers by default) it reports, in
one run, medians of several runs on one core:
  - the bot's own time from synthesizer audio to uploaded media: ``bot.voice.speech.to_voice_media`` (decode,
    split at quiet points, encode AMR-NB parts) and ``VoiceUploader.upload`` of every part to the sandbox's
    ``media/upload`` (a separate process) over HTTP, less the sandbox's own handling time (it decodes every
    upload to check it);
  - a bare PyAV decode-and-encode of the same audio to AMR-NB 8 kHz (the least anyone could do), the baseline;
  - the transcode speed as a multiple of real time.
Target: the bot's time ≤ 1.2x the bare transcode.

    .venv/bin/python benchmarks/voice_reply.py [--runs 9] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import av
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voice import bare_transcode as bare_transcode_to  # noqa: E402  (benchmarks/voice.py)
from voice import start_sandbox  # noqa: E402

from bot.config import WeChatConfig  # noqa: E402
from bot.store.memory import MemoryStore  # noqa: E402
from bot.voice.speech import to_voice_media  # noqa: E402
from bot.wechat import WeChatAPI  # noqa: E402
from bot.wechat.media import VoiceUploader  # noqa: E402

PHRASE = "已打开客厅的灯，"  # 0.2 s per character in the sandbox, silent at the comma


def bare_transcode(data: bytes) -> bytes:
    """The least possible: decode, resample to 8 kHz mono, encode AMR-NB 12.2 kbit/s, one pass, no split."""
    return bare_transcode_to(data, "amr")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="runs per speech length (medians are reported)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 runs")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    print(f"# voice reply benchmark — {platform.python_version()}, PyAV {av.__version__}, {os.cpu_count()} cores, "
          f"{platform.machine()}")
    print(f"# command: {' '.join([Path(sys.executable).name] + sys.argv)}\n")
    proc, url = start_sandbox(0.0)
    results: dict[str, dict[str, float]] = {}
    try:
        client = WeChatAPI(WeChatConfig("wxsandbox", "sandbox-secret", "t", api_base_url=url), MemoryStore())
        uploader = VoiceUploader(client, MemoryStore())
        print(f"synthesizer audio (sandbox /v1/audio/speech, mp3) → AMR-NB parts → media/upload; median of {runs} runs")
        print(f"{'speech':>7} {'parts':>6} {'bot ms':>8} {'transcode ms':>13} {'upload ms':>10} {'bare ms':>8} "
              f"{'bot/bare':>9} {'x realtime':>11}")
        for seconds in (5, 60, 150):
            text = PHRASE * int(seconds / (0.2 * len(PHRASE)))
            audio = requests.post(f"{url}/v1/audio/speech", timeout=30, json={
                "model": "tts-1", "input": text, "voice": "alloy", "response_format": "mp3"}).content
            uploader.upload(to_voice_media(audio).parts[0].data, "amr")  # warm up: token, connection, codecs
            bot, transcode, upload, bare = [], [], [], []
            parts = 0
            for _ in range(runs):
                before = len(requests.get(f"{url}/sandbox/calls", timeout=5).json())
                started = time.perf_counter()
                speech = to_voice_media(audio, "amr")
                transcoded = time.perf_counter()
                for part in speech.parts:
                    uploader.upload(part.data, part.fmt)
                done = time.perf_counter()
                calls = requests.get(f"{url}/sandbox/calls", timeout=5).json()[before:]
                sandbox_s = sum(c.get("ms", 0.0) for c in calls if c["path"].endswith("/media/upload")) / 1000
                bot.append(done - started - sandbox_s)
                transcode.append(transcoded - started)
                upload.append(done - transcoded - sandbox_s)
                started = time.perf_counter()
                bare_transcode(audio)
                bare.append(time.perf_counter() - started)
                parts = len(speech.parts)
            b, t, u, base = (statistics.median(v) for v in (bot, transcode, upload, bare))
            length = speech.duration_s
            results[f"reply_{seconds}s"] = {"speech_s": length, "bot_s": b, "transcode_s": t, "upload_s": u,
                                            "bare_s": base, "ratio": b / base, "x_realtime": length / t,
                                            "parts": parts}
            print(f"{length:>6.1f}s {parts:>6} {b * 1000:>8.1f} {t * 1000:>13.1f} {u * 1000:>10.1f} "
                  f"{base * 1000:>8.1f} {b / base:>9.2f} {length / t:>10.0f}x")
    finally:
        proc.terminate()
        proc.wait(5)
    print("\nbot = transcode + upload of every part − the sandbox's own handling time; bare = one PyAV pass to AMR "
          "with no split and no upload. 150 s of speech is three parts.")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "voice_reply.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
