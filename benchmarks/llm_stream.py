"""Streaming's point: the time to the first text the user sees for a 20 s answer, against the time of the whole.

A real bot (``create_app`` on a threaded server, memory store, ``handlers.llm``) and the sandbox (its chat
endpoint writes "用 20 秒回答" as twenty sentences over 20 s; WeChat's customer-service API on or off) on loopback;
``WeChatRetryClient`` plays WeChat's tries (5 s each, three in all). On an account without customer service the
user writes again ("继续") every ``--think`` seconds after the tries, until they have read the whole answer.
All of WeChat's clocks and the answer's 20 s are multiplied by ``--scale`` (default 0.25) and the results are
reported on WeChat's real clock (divided by it again).

Reported per account kind, medians of ``--runs``: the first text of the answer the user sees (the pickup notice
does not count: it is shown separately), the moment they have read all of it, and when the model finished.
Written to ``benchmarks/out/llm_stream.json``.

    python benchmarks/llm_stream.py                # 5 runs per kind, clocks × 0.25 (about 90 s)
    python benchmarks/llm_stream.py --runs 9 --scale 1
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from werkzeug.serving import WSGIRequestHandler, make_server  # noqa: E402

from bot.config import Config, config_from_dict  # noqa: E402
from bot.sandbox import Sandbox  # noqa: E402
from bot.sandbox.chat_api import timed  # noqa: E402
from bot.testing import WeChatRetryClient  # noqa: E402
from bot.web.app import create_app  # noqa: E402

APPID, SECRET, TOKEN = "wxbenchllmstream1", "bench-secret", "bench-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ANSWER_S = 20.0


def bot_config(sandbox_url: str, scale: float) -> Config:
    return config_from_dict({
        "wechat": {"appid": APPID, "appsecret": SECRET, "token": TOKEN, "encoding_aes_key": AES_KEY,
                   "api_base_url": sandbox_url},
        "handlers": {"routers": ["handlers.llm:router"]},
        "storage": {"url": "memory://"},
        "reply": {"budget_s": 4.5 * scale, "wechat_timeout_s": 5.0 * scale, "lease_s": 6.0 * scale,
                  "typing_after_s": 2.0 * scale, "sweep_every_s": max(0.05, scale)},
        "logging": {"level": "WARNING"},
        "llm": {"url": f"{sandbox_url}/v1", "model": "sandbox-chat", "per_user_per_minute": 0},
    })


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # one line per try would drown the results
        pass


class Bot:
    """The bot on a threaded werkzeug server in this process (real sockets, real timeouts)."""

    def __init__(self, config: Config) -> None:
        self.server = make_server("127.0.0.1", 0, create_app(config), threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}{config.server.path}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def whole_in(whole: str, read: str, marker: str, notice: str) -> bool:
    """Whether the user has read the whole answer, in order: it comes in pieces, and the answers to the user's
    own "继续" (the sandbox echoes them with the turn number) come between them."""
    def plain(text: str) -> str:
        return re.sub(r"\s+|（第\d+轮）你说：继续", "", text.replace(marker, "").replace(notice, ""))
    return plain(whole) in plain(read)


def one_run(config: Config, bot: Bot, sandbox: Sandbox, scale: float, think_s: float,
            notice: str, marker: str) -> dict[str, Any]:
    """One user asks for the 20 s answer; times (on the scaled clock) of what they saw."""
    whole = timed(ANSWER_S)
    client = WeChatRetryClient(config, bot.url, sandbox.url, wait_s=5.0 * scale, cs_wait_s=0.0)
    openid = f"obench{uuid.uuid4().hex[:16]}"
    started = time.perf_counter()
    first_text = notice_at = None
    read = ""
    limit = started + 3 * ANSWER_S * scale + 10
    question = "用 20 秒回答"
    seen_cs = 0
    while time.perf_counter() < limit:
        seen = client.text(question, openid=openid)
        for reply in seen.passive:
            at = time.perf_counter() - started
            content = reply.content or ""
            if content == notice:
                notice_at = notice_at if notice_at is not None else at
            elif content and first_text is None and content.replace(marker, "") and content[:4] in whole:
                first_text = at
            read += content
        question = "继续"
        # customer-service messages arrive on their own: watch them until the answer is whole or it is time to
        # write again (accounts without it)
        until = time.perf_counter() + think_s
        while time.perf_counter() < until:
            messages = [m["text"]["content"] for m in client.customer_service_messages(openid)
                        if m.get("msgtype") == "text"]
            for content in messages[seen_cs:]:
                if first_text is None and content[:4] in whole:
                    first_text = time.perf_counter() - started
                read += content
            seen_cs = len(messages)
            if whole_in(whole, read, marker, notice):
                break
            time.sleep(0.02)
        if whole_in(whole, read, marker, notice):
            return {"first_text_s": first_text, "whole_s": time.perf_counter() - started, "notice_s": notice_at}
    return {"first_text_s": first_text, "whole_s": None, "notice_s": notice_at}


def median(values: list[float | None], scale: float) -> float | None:
    present = [v / scale for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    scale = args.scale
    sandbox = Sandbox(appid=APPID, appsecret=SECRET, chat_time_scale=scale, chat_chunks_per_s=20.0).start()
    results: dict[str, Any] = {}
    try:
        config = bot_config(sandbox.url, scale)
        notice, marker = config.reply.pickup_notice, config.reply.more_marker
        for kind, cs in (("with customer service", True), ("without customer service", False)):
            sandbox.configure(customer_service=cs)
            bot = Bot(config)
            try:
                one_run(config, bot, sandbox, scale, args.think * scale, notice, marker)  # warm-up: not counted
                runs = [one_run(config, bot, sandbox, scale, args.think * scale, notice, marker)
                        for _ in range(args.runs)]
            finally:
                bot.stop()
            results[kind] = {
                "first_text_s": median([r["first_text_s"] for r in runs], scale),
                "whole_s": median([r["whole_s"] for r in runs], scale),
                "notice_s": median([r["notice_s"] for r in runs], scale),
                "answer_written_s": ANSWER_S,
                "runs": [{k: (round(v / scale, 2) if v is not None else None) for k, v in r.items()} for r in runs],
            }
    finally:
        sandbox.stop()
    return {"command": "python benchmarks/llm_stream.py " + " ".join(sys.argv[1:]), "scale": scale,
            "runs_per_kind": args.runs, "think_s": args.think, "results": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per account kind (plus one warm-up)")
    ap.add_argument("--scale", type=float, default=0.25, help="multiplies WeChat's clocks and the answer's 20 s")
    ap.add_argument("--think", type=float, default=3.0, help="seconds (real clock) before the user writes again")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "llm_stream.json"))
    args = ap.parse_args(argv)
    result = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"$ {result['command'].strip()}")
    print(f"a {ANSWER_S:g} s streamed answer, WeChat's clock (medians of {args.runs} runs, clocks x {args.scale:g}):")
    print(f"{'account':<26} {'first text':>11} {'whole answer':>13} {'pickup notice':>14}")
    for kind, r in result["results"].items():
        cells = [f"{r[k]:.2f} s" if r[k] is not None else "-" for k in ("first_text_s", "whole_s", "notice_s")]
        print(f"{kind:<26} {cells[0]:>11} {cells[1]:>13} {cells[2]:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
