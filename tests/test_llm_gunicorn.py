"""handlers.llm under real gunicorn: 2 gthread workers (the repository's ``gunicorn.conf.py``) sharing a SQLite
store, WeChat's clocks × 0.2 (a try is dropped at 1 s, the budget is 0.8 s) and the sandbox's chat service
timed × 0.2 (the 12 s story streams over 2.4 s).

Two servers, started once for the module and in parallel: one whose sandbox account has the customer-service
API, one without (the account, not the bot, decides where the rest of a streamed answer goes). Which worker
served a request is read from gunicorn's access log (a command-line flag over the file: the worker's pid and
a tag header per message); tests that need consecutive messages on different workers send each one over a
keep-alive connection that worker is known to hold (:meth:`Rig.on`). The three long answers run in the
background from the first test on (the ``stories`` fixture) while the other tests run; their tests come last.
"""
from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from conftest import Server, write_config_file
from delivery_support import (
    NOTICE,
    budget,
    openid,
    run_all,
    sections,
    start_gunicorn_conf,
    start_sandbox,
    wait_for,
    worker_pids,
)
from llm_support import APOLOGIES, KEY, MORE, chat_calls

from bot.config import Config, load_config
from bot.ops.trace import hash_openid
from bot.sandbox import Sandbox
from bot.sandbox.chat_api import STORY, timed
from bot.testing import Seen, WeChatRetryClient, messages

SCALE = 0.2  # WeChat's clocks and the sandbox's timed answers
LIMIT = 4  # [llm] per_user_per_minute on both servers (a story's user sends 4 messages)
LIMITED = "慢一点，一分钟最多问四次。"
RESET = "好的，我已经忘掉之前的对话，我们重新开始吧。"  # [llm] reset_reply's default
FOLLOW = "然后呢"
RIGS = ("customer_service", "no_customer_service")
TAG = "X-Wvb-Tag"
ACCESS = ("--access-logfile", "-", "--access-logformat", "access pid=%(p)s tag=%({x-wvb-tag}i)s %(m)s %(U)s %(s)s")
ACCESS_LINE = re.compile(r"access pid=<(\d+)> tag=(\S+) ")


class Rig:
    """A sandbox (with or without the customer-service API) and a 2-worker gunicorn on SQLite answering
    through handlers.llm."""

    def __init__(self, directory: Path, *, customer_service: bool) -> None:
        self.sandbox: Sandbox = start_sandbox(0.05, chat_api_key=KEY, chat_chunks_per_s=0.0, chat_time_scale=SCALE,
                                              customer_service=customer_service)
        self.directory = directory
        self.config_path = write_config_file(directory, **sections(
            self.sandbox.url, store=f"sqlite:///{directory / 'state.db'}", scale=SCALE,
            handlers={"routers": ["handlers.lights:router", "handlers.llm:router"]}, voice={"recognizers": ["push"]},
            llm={"url": f"{self.sandbox.url}/v1", "model": "sandbox-chat", "api_key": KEY, "apologies": APOLOGIES,
                 "per_user_per_minute": LIMIT, "rate_limited_reply": LIMITED}))
        self.config: Config = load_config(self.config_path)
        self.server: Server | None = None
        self.workers: list[int] = []
        self._pinned: dict[int, requests.Session] = {}
        self._tags = itertools.count()
        self._lock = threading.Lock()

    def start(self) -> Rig:
        self.server = start_gunicorn_conf(self.config_path, self.directory, workers=2, threads=16, args=ACCESS)
        wait_for(lambda: len(worker_pids(self.live)) == 2, 10)
        self.workers = sorted(worker_pids(self.live))
        assert len(self.workers) == 2, self.live.log()
        for pid in self.workers:  # each worker's first question imports the chat library: not in a test's time
            seen, _ = self.send("warm up", openid("warm"), pid=pid, label="warm")
            assert "".join(seen.answers).endswith("你说：warm up"), seen  # (a cold first try may be too slow)
        return self

    def stop(self) -> None:
        for session in self._pinned.values():
            session.close()
        if self.server is not None:
            self.server.stop()
        self.sandbox.stop()

    @property
    def live(self) -> Server:
        assert self.server is not None
        return self.server

    def tag(self, label: str) -> str:
        return f"{label}-{next(self._tags)}"

    def served(self, tag: str, count: int = 1) -> list[int]:
        """The worker pid of each request tagged ``tag`` (one per try), from the access log."""
        lines = self.live.wait_for_log(f" tag={tag} ", count)
        return [int(m.group(1)) for m in map(ACCESS_LINE.search, lines) if m and m.group(2) == tag]

    def on(self, pid: int) -> requests.Session:
        """A session whose keep-alive connection worker ``pid`` holds right now (a tagged /healthz says so).

        A new connection goes to whichever worker accepts it first: keep opening until one is ``pid``'s. Each
        probe is sent right before the message it is for, well within gunicorn's 2 s keep-alive."""
        with self._lock:
            for _ in range(100):
                session = self._pinned.pop(pid, None) or requests.Session()
                tag = self.tag("probe")
                session.get(f"{self.live.base}/healthz", headers={TAG: tag}, timeout=5).raise_for_status()
                (got,) = self.served(tag)
                old = self._pinned.pop(got, None)
                if old is not None and old is not session:
                    old.close()
                self._pinned[got] = session
                if got == pid:
                    return session
        raise AssertionError(f"no connection to worker {pid} in 100 tries")

    def client(self, session: requests.Session | None = None, **kw: float) -> WeChatRetryClient:
        return WeChatRetryClient(self.config, self.live.url, self.sandbox.url, wait_s=5.0 * SCALE,
                                 session=session, **kw)

    def send(self, text: str, user: str, *, pid: int | None = None, label: str = "msg", msg_id: int | None = None,
             **kw: float) -> tuple[Seen, str]:
        """``text`` from ``user`` with WeChat's tries, over a connection of worker ``pid`` (None: any); each
        try's request carries the tag returned, for :meth:`served`."""
        tag = self.tag(label)
        session = self.on(pid) if pid is not None else requests.Session()
        session.headers[TAG] = tag
        seen = self.client(session, **kw).text(text, openid=user, msg_id=msg_id)
        if pid is None:
            session.close()
        return seen, tag

    def message_lines(self, msg_id: int) -> list[str]:
        return self.live.log_lines(f"bot.message: message msg_id={msg_id} ")


@dataclass
class Sight:
    at: float  # time.monotonic()
    how: str  # "passive" | "customer service"
    text: str


class Phone:
    """Everything one user sees, in the order it appears: each passive reply when its try returns, and the
    customer-service messages the sandbox accepts for the user (looked at every 10 ms, in process)."""

    def __init__(self, sandbox: Sandbox, user: str) -> None:
        self.sandbox, self.user = sandbox, user
        self.sights: list[Sight] = []
        self.sent: list[tuple[str, Seen]] = []  # what the user wrote and how WeChat's tries went, as answered
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def send(self, rig: Rig, text: str, **kw: object) -> Seen:
        started = time.monotonic()
        seen, _ = rig.send(text, self.user, label="story", **kw)  # type: ignore[arg-type]
        with self._lock:
            self.sights += [Sight(started + s.at, s.kind, s.text) for s in seen.timeline if s.kind == "passive"]
            self.sent.append((text, seen))
        return seen

    def _watch(self) -> None:
        known = 0
        while not self._stop.is_set():
            mine = [m for m in self.sandbox.custom_messages() if m.get("touser") == self.user]
            now = time.monotonic()
            with self._lock:
                self.sights += [Sight(now, "customer service", str(m.get("text", {}).get("content", m)))
                                for m in mine[known:]]
            known = len(mine)
            time.sleep(0.01)

    def hang_up(self) -> list[Sight]:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            return sorted(self.sights, key=lambda s: s.at)


ECHO = re.compile(rf"(\n\n)?（第\d+轮）你说：{FOLLOW}")


def story_text(text: str) -> str:
    """What a text adds to the story: the notice, the "more" marker and answers to the follow-ups taken out."""
    return ECHO.sub("", text.replace(NOTICE, "").replace(MORE, ""))


@dataclass(frozen=True)
class Ask:
    """A long answer asked for on one server, and when (s after asking) the user writes again meanwhile."""

    rig: str
    question: str
    answer: str
    follow_at: tuple[float, float]


ASKS = {
    # the first sentences at the first try's budget (0.8 s), the rest by customer service once written (2.4 s);
    # the user writes while the first try is held, and between the pieces
    "customer_service": Ask("customer_service", "讲个故事", STORY, (0.4, 1.4)),
    # no customer service: WeChat's tries are held, the third one's budget ends at 2.8 s, after the 2.4 s story
    # (as on WeChat's clock: 12 s < 10 s + 4.5 s); the user writes while the tries are held
    "no_customer_service": Ask("no_customer_service", "讲个故事", STORY, (0.4, 1.4)),
    # no customer service, an answer longer than the three tries (20 s: 4 s): the third try shows what is
    # written by 2.8 s; the user writes while it is still being written, and the rest comes with the next message
    "no_customer_service_longer": Ask("no_customer_service", "用 20 秒回答", timed(20), (0.4, 3.3)),
}


@dataclass
class Story:
    rig: Rig
    user: str
    msg_id: int
    sights: list[Sight]
    sent: list[tuple[str, Seen]]

    @property
    def read(self) -> str:
        return "".join(story_text(s.text) for s in self.sights)


def tell_story(rig: Rig, ask: Ask) -> Story:
    """A user asks for a long answer and, while it streams, writes twice more; once its job has ended, once
    more (which picks up what an account without customer service keeps)."""
    phone = Phone(rig.sandbox, openid("story"))
    story_id, started = messages.next_msg_id(), time.monotonic()

    def follow_ups() -> None:
        for at in ask.follow_at:
            time.sleep(max(0.0, started + at - time.monotonic()))
            phone.send(rig, FOLLOW)
    try:
        run_all([lambda: phone.send(rig, ask.question, msg_id=story_id), follow_ups])
        assert rig.live.wait_for_log(f"llm answered msg_id={story_id} ", 1, timeout=15), rig.live.log()[-3000:]
        if rig.sandbox.state.setting("customer_service"):
            wait_for(lambda: rig.message_lines(story_id), 5)  # the rest, sent by customer service
        phone.send(rig, FOLLOW)
        time.sleep(0.3)  # a duplicate would come now
    finally:
        sights = phone.hang_up()
    return Story(rig, phone.user, story_id, sights, phone.sent)


@pytest.fixture(scope="module")
def rigs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Rig]]:
    """Both servers, booted in parallel (the slow part of this module)."""
    rigs: dict[str, Rig] = {}
    try:
        for name in RIGS:
            rigs[name] = Rig(tmp_path_factory.mktemp(name), customer_service=name == "customer_service")
        run_all([r.start for r in rigs.values()])
        yield rigs
    finally:
        run_all([r.stop for r in rigs.values()])  # a gunicorn takes over a second to stop


@pytest.fixture(scope="module")
def stories(rigs: dict[str, Rig]) -> Iterator[dict[str, Future[Story]]]:
    """The long answers (``ASKS``), told in the background while the module's other tests run."""
    pool = ThreadPoolExecutor(len(ASKS))
    futures = {name: pool.submit(tell_story, rigs[ask.rig], ask) for name, ask in ASKS.items()}
    try:
        yield futures
    finally:
        pool.shutdown(wait=True)  # before the servers stop


pytestmark = pytest.mark.usefixtures("stories")  # started by the first test


# -- a fast answer -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", RIGS)
def test_a_fast_answer_is_the_passive_reply_of_either_worker(rigs: dict[str, Rig], name: str) -> None:
    rig = rigs[name]
    for pid in rig.workers:
        user = openid("fast")
        seen, tag = rig.send("今天星期几？", user, pid=pid, label="fast", settle_s=0.2)
        assert seen.statuses == ["reply"] and seen.answers == ["（第1轮）你说：今天星期几？"], seen
        assert seen.customer_service == [] and (seen.answered_s or 9) < budget(SCALE), seen
        assert rig.served(tag) == [pid]
        seen, tag = rig.send("打开客厅的灯", user, pid=pid, label="fast")
        assert seen.answers == ["已打开客厅的灯"], seen  # handlers.lights comes first
        assert rig.served(tag) == [pid]
    asked = [c["json"] for c in chat_calls(rig.sandbox) if c["json"]["messages"][-1]["content"] == "今天星期几？"]
    assert len(asked) == 2 and all(b["model"] == "sandbox-chat" and b["stream"] is True for b in asked), asked


# -- memory ------------------------------------------------------------------------------------------
def test_memory_across_three_turns_on_alternating_workers_then_reset(rigs: dict[str, Rig]) -> None:
    rig = rigs["customer_service"]
    a, b = rig.workers
    user = openid("mem")
    turns = [("我叫小明", a, "（第1轮）你说：我叫小明"),
             ("我住在上海", b, "（第2轮）你说：我住在上海"),
             ("我说过什么", a, "你之前说过：「我叫小明」、「我住在上海」。"),
             ("清除记忆", b, RESET),
             ("我说过什么", a, "你还没说过别的。")]
    for text, pid, expected in turns:
        seen, tag = rig.send(text, user, pid=pid, label="mem")
        assert seen.statuses == ["reply"] and seen.answers == [expected], (text, seen)
        assert rig.served(tag) == [pid], text  # each message on the other worker than the one before
    mine = [c["json"]["messages"] for c in chat_calls(rig.sandbox)
            if c["json"]["messages"][-1]["content"] == "我说过什么"]
    assert [m["role"] for m in mine[0]] == ["system", "user", "assistant", "user", "assistant", "user"], mine
    assert mine[0][2]["content"] == "（第1轮）你说：我叫小明"  # remembered on a, read on b, then on a
    assert [m["role"] for m in mine[-1]] == ["system", "user"], mine  # after the reset, on the other worker
    hashed = hash_openid(rig.config, user)
    assert len(rig.live.wait_for_log(f"openid={hashed} ", len(turns))) == len(turns)  # one bot.message each


# -- rate limit --------------------------------------------------------------------------------------
def away_from_a_minute_boundary(margin_s: float = 2.5) -> None:
    """The limit counts per calendar minute: a test straddling a boundary would count in two windows."""
    into = time.time() % 60
    if into > 60 - margin_s:
        time.sleep(60 - into + 0.1)


def test_the_rate_limit_holds_across_the_two_workers(rigs: dict[str, Rig]) -> None:
    rig = rigs["customer_service"]
    a, b = rig.workers
    user, other = openid("rate"), openid("rate")
    away_from_a_minute_boundary()
    sent = []
    for i in range(LIMIT + 2):  # alternately on each worker
        pid, msg_id = (a, b)[i % 2], messages.next_msg_id()
        seen, tag = rig.send(f"问题{i}", user, pid=pid, label="rate", msg_id=msg_id)
        sent.append((seen, rig.served(tag), pid, msg_id))
    assert [s.answers for s, *_ in sent] == \
        [[f"（第{i + 1}轮）你说：问题{i}"] for i in range(LIMIT)] + [[LIMITED]] * 2, [s for s, *_ in sent]
    assert all(s.statuses == ["reply"] and served == [pid] for s, served, pid, _ in sent), sent
    for _, _, _, msg_id in sent[LIMIT:]:
        assert rig.live.wait_for_log(f"llm rate limited msg_id={msg_id} ", 1)
    seen, _ = rig.send("我也问", other, pid=b, label="rate")
    assert seen.answers == ["（第1轮）你说：我也问"]  # per user
    asked = [c for c in chat_calls(rig.sandbox) if c["json"]["messages"][-1]["content"].startswith("问题")]
    assert len(asked) == LIMIT  # refused questions never reach the service


# -- a long answer -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ASKS))
def test_a_long_streamed_answer_arrives_whole_in_order_exactly_once(stories: dict[str, Future[Story]],
                                                                    name: str) -> None:
    """Whole, in order and once, from all the user saw (passive replies and customer-service messages, in
    time), with the answers to the user's own messages taken out; each of those answered once, at once."""
    ask, story = ASKS[name], stories[name].result(timeout=60)
    shown = [(round(s.at - story.sights[0].at, 2), s.how, s.text) for s in story.sights]
    assert story.read == ask.answer, shown
    assert sum(len(ECHO.findall(s.text)) for s in story.sights) == len(ask.follow_at) + 1, shown
    follow_ups = [seen for text, seen in story.sent if text == FOLLOW]
    assert all(seen.statuses == ["reply"] for seen in follow_ups), follow_ups  # never held behind the story
    assert len(story.rig.message_lines(story.msg_id)) == 1, story.rig.live.log()[-3000:]  # delivered once
    pieces = [i for i, s in enumerate(story.sights) if story_text(s.text)]
    echoes = [i for i, s in enumerate(story.sights) if ECHO.search(s.text)]
    if name != "no_customer_service":  # in pieces, and the user's own message answered between them
        assert len(pieces) >= 2 and any(pieces[0] < e < pieces[-1] for e in echoes), shown
    if name == "customer_service":
        assert story.sights[pieces[0]].how == "passive" and story.sights[pieces[-1]].how == "customer service"
    else:
        assert all(s.how == "passive" for s in story.sights), shown


def test_no_log_line_carries_a_raw_openid(stories: dict[str, Future[Story]]) -> None:
    """Session lines (a merge, a failed save) show the hashed openid, like every other line."""
    told = [f.result(timeout=60) for f in stories.values()]
    for story in told:
        if not story.rig.live.log_lines(f"session merged msg_id={story.msg_id} "):
            pytest.fail(f"no session merge for {story.msg_id}: nothing to check")  # not the expected failure
    leaked = [line for story in told for line in story.rig.live.log().splitlines() if story.user in line]
    assert leaked == [], leaked
