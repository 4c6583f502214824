"""``simulate`` waits while the bot still owes the user something, and only then (issue 22, item 1).

The bot runs in this process on a real socket against the real sandbox, its store a SQLite file that
``simulate`` (a subprocess, as a user runs it) reads too; WeChat's clock is scaled by 0.1 where the story is
told, real where nothing can come (so that waiting for nothing would show as seconds).
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import merge, run_cli, write_config_file
from delivery_support import local_bot, openid, sections, start_sandbox, wait_for

from bot import Context, Router
from bot.config import load_config
from bot.sandbox import Sandbox

STORY = [f"第{i}句。" for i in range(1, 13)]
SECONDS_PER_SENTENCE = 0.2  # 2.4 s in all: past the first try's budget (0.4 s) and the last try (~1.45 s)
SUMMARY = re.compile(r"\(\w+ mode, \d tr(?:y|ies): [^;]*; (\d+\.\d\d)s(.*)\)$")


def story_router() -> Router:
    router = Router("story")

    def tell() -> Iterator[str]:
        for sentence in STORY:
            time.sleep(SECONDS_PER_SENTENCE)
            yield sentence

    @router.keyword("讲个故事")
    def story(ctx: Context) -> object:
        return ctx.stream(tell())

    router.fallback(lambda ctx: ctx.text)
    return router


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = start_sandbox(0.05)
    yield sb
    sb.stop()


def simulate(path: Path, url: str, *args: str) -> Any:
    return run_cli("simulate", *args, "--config", str(path), "--url", url, timeout=60)


def user_saw(stdout: str) -> str:
    """Everything the user read, in order, without the times (a text of several lines joined back)."""
    texts: list[str] = []
    for line in stdout.splitlines():
        match = re.match(r"^\[ *\d+\.\d\ds\] [a-z ]+: (.*)$", line)
        if match:
            texts.append(match.group(1))
        elif texts:
            texts[-1] += "\n" + line.strip()
    return "".join(texts)


def summary(stderr: str) -> tuple[float, str]:
    match = SUMMARY.search(stderr.strip().splitlines()[-1])
    assert match, stderr
    return float(match.group(1)), match.group(2)


def test_the_whole_story_is_shown_on_an_account_with_customer_service(tmp_path: Path, sandbox: Sandbox) -> None:
    path = write_config_file(tmp_path, **sections(sandbox.url, store="sqlite:///state.db"))
    with local_bot(load_config(path, env={}), story_router()) as bot:
        result = simulate(path, bot.url, "text", "讲个故事", "--openid", openid("story"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # the first sentences at the budget (on a machine too busy to have written one by then: none), the rest
    # by customer service when written — and simulate showed it all
    assert lines[0].split("] ")[1].startswith(("passive: 第1句。", "customer service: 第1句。")), lines
    assert "customer service: " in lines[-1], lines
    assert user_saw(result.stdout) == "".join(STORY)
    elapsed, note = summary(result.stderr)
    assert elapsed >= len(STORY) * SECONDS_PER_SENTENCE and note == "; the bot owes nothing more for this message"


def test_without_customer_service_it_waits_until_the_rest_is_kept_and_says_so(tmp_path: Path) -> None:
    user = openid("unverified")
    with start_sandbox(0.05, customer_service=False) as unverified:
        path = write_config_file(tmp_path, **sections(unverified.url, store="sqlite:///state.db"))
        with local_bot(load_config(path, env={}), story_router()) as bot:
            first = simulate(path, bot.url, "text", "讲个故事", "--openid", user)
            second = simulate(path, bot.url, "text", "继续", "--openid", user)
    assert first.returncode == 0, first.stderr
    shown = user_saw(first.stdout)
    assert shown.startswith("第1句。") and shown.endswith("（未完，回复任意文字继续）"), shown
    elapsed, note = summary(first.stderr)
    assert elapsed >= len(STORY) * SECONDS_PER_SENTENCE  # until the story was written and kept, not at the reply
    assert note == "; the rest of the answer is kept for pickup: it comes with this user's next message"
    rest = user_saw(second.stdout)
    assert shown.removesuffix("（未完，回复任意文字继续）") + rest == "".join(STORY) + "\n\n继续", rest
    assert summary(second.stderr)[0] < 1.0


@pytest.mark.parametrize("store", ["sqlite:///state.db", "memory://"])
def test_nothing_can_come_so_it_stops_at_once(tmp_path: Path, sandbox: Sandbox, store: str) -> None:
    """WeChat's real clock: an old simulate waited 2 x 5 s for customer-service messages that cannot come. A
    refused push is never answered, whatever the store; an event answered ``success`` is known to be finished
    from its record (simulate cannot read a bot's memory://)."""
    real_clock = sections(sandbox.url, store=store, scale=1.0)
    path = write_config_file(tmp_path, **real_clock)
    wrong = write_config_file(tmp_path, "wrong.toml", **merge(real_clock, {"wechat": {"token": "not-the-token"}}))
    with local_bot(load_config(path, env={}), story_router()) as bot:
        refused = simulate(wrong, bot.url, "text", "你好")
        event = simulate(path, bot.url, "event", "unsubscribe") if store != "memory://" else None
    assert (refused.returncode, refused.stdout) == (1, "HTTP 403: bad signature\n")
    assert summary(refused.stderr)[0] < 2.0, refused.stderr
    if event is not None:
        assert event.returncode == 0 and event.stdout == "(no reply: the user sees nothing)\n", event.stdout
        elapsed, note = summary(event.stderr)
        assert elapsed < 2.0 and note == "; the bot owes nothing more for this message", event.stderr


def test_it_stops_at_max_wait_and_says_what_is_still_owed(tmp_path: Path, sandbox: Sandbox) -> None:
    path, user = write_config_file(tmp_path, **sections(sandbox.url, store="sqlite:///state.db")), openid("impatient")
    with local_bot(load_config(path, env={}), story_router()) as bot:
        result = run_cli("simulate", "text", "讲个故事", "--config", str(path), "--url", bot.url, "--max-wait", "1",
                         "--openid", user)
        # the story still comes (by customer service) after simulate stopped looking
        assert wait_for(lambda: [m for m in sandbox.custom_messages() if m.get("touser") == user], timeout=10.0)
    elapsed, note = summary(result.stderr)
    assert 1.0 <= elapsed < 2.0, result.stderr
    assert note == ("; stopped looking after 1 s although the bot still owes more: the answer is still being "
                    "prepared (--max-wait)")
