"""Exactly one answer with two gunicorn gthread workers sharing a SQLite store (real processes, real sockets).

A retry may land on the other worker than the one running the job; the record in SQLite is what both see.
Servers start from the repository's ``gunicorn.conf.py``, the documented deployment. One test runs on
WeChat's real clock (5 s tries, 7 s recognition); the others scale it down.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import Server, write_config_file
from delivery_support import (
    ANSWER,
    SENTENCE,
    job_owner,
    openid,
    problems,
    run_all,
    sections,
    start_gunicorn_conf,
    start_sandbox,
    wait_for,
)

from bot.config import Config, load_config
from bot.delivery.leases import owner_pid
from bot.sandbox import Sandbox
from bot.store import open_store
from bot.testing import Seen, WeChatRetryClient, messages


class Rig:
    """A sandbox and a 2-worker gunicorn on SQLite, with WeChat's clock × ``scale``."""

    def __init__(self, directory: Path, *, scale: float, threads: int, mode: str = "auto") -> None:
        self.scale = scale
        self.sandbox: Sandbox = start_sandbox()
        self.db = directory / "state.db"
        self.config_path = write_config_file(directory, **sections(
            self.sandbox.url, store=f"sqlite:///{self.db}", mode=mode, scale=scale))
        self.config: Config = load_config(self.config_path)
        self.threads = threads
        self.server: Server | None = None

    def start(self) -> Rig:
        self.server = start_gunicorn_conf(self.config_path, self.config_path.parent, workers=2, threads=self.threads)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.sandbox.stop()

    def client(self, **kw: float) -> WeChatRetryClient:
        assert self.server is not None
        return WeChatRetryClient(self.config, self.server.url, self.sandbox.url, wait_s=5.0 * self.scale, **kw)

    def send_voices(self, n: int, *, latency_s: float, stagger_s: float = 0.0, **kw: float) -> list[Seen]:
        """``n`` users each say SENTENCE at once (``stagger_s`` apart), with recognition taking ``latency_s``."""
        self.sandbox.configure(recognition_latency_s=latency_s)
        media_id = self.sandbox.register_voice(SENTENCE, duration_s=0.5)["media_id"]
        client = self.client(**kw)

        def one(i: int) -> Seen:
            time.sleep(i * stagger_s)
            return client.voice(media_id, openid=openid(f"g{i}"))
        return run_all([lambda i=i: one(i) for i in range(n)])


@pytest.fixture(scope="module")
def rigs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Rig]]:
    """Two servers started in parallel (a gunicorn boot is the slow part of this module)."""
    rigs = {"fifth": Rig(tmp_path_factory.mktemp("fifth"), scale=0.2, threads=24),
            "real": Rig(tmp_path_factory.mktemp("real"), scale=1.0, threads=8)}
    try:
        run_all([r.start for r in rigs.values()])
        yield rigs
    finally:
        for r in rigs.values():
            r.stop()


def assert_one_answer_each(seen: list[Seen], rig: Rig, latency_s: float, first: list[str] | None = None) -> None:
    """Each user saw exactly one answer, by WeChat's rules; ``first``: the tries of the first user to ask."""
    for s in seen:
        assert problems(s, "auto", latency_s, rig.scale) == [], s
    if first is not None:
        assert seen[0].statuses == first, seen[0]


@pytest.mark.parametrize("latency_s", [0.1, 1.4, 2.4, 4.0])
def test_two_workers_share_the_job_state(rigs: dict[str, Rig], latency_s: float) -> None:
    """Recognition of 0.5, 7, 12 and 20 s (WeChat's clock × 0.2): answered by the first, second or third try,
    or through customer service after the last; four users at once, so tries land on both workers."""
    rig = rigs["fifth"]
    seen = rig.send_voices(4, latency_s=latency_s, stagger_s=0.03, cs_wait_s=5.0, settle_s=0.3)
    assert_one_answer_each(seen, rig, latency_s, {4.0: ["timeout", "timeout", "success"]}.get(latency_s))


def test_forty_held_requests_are_all_answered(rigs: dict[str, Rig]) -> None:
    """2 workers × 24 threads (gunicorn.conf.py, WVB_THREADS=24) hold 40 messages whose first try cannot be
    answered, and still answer every one of them passively at a later try (the second on an idle machine);
    a health check gets through meanwhile."""
    rig = rigs["fifth"]
    assert rig.server is not None
    health: list[int] = []

    def probe() -> None:
        time.sleep(0.5)  # while every first try is held
        health.append(requests.get(f"{rig.server.base}/healthz", timeout=2).status_code)
    prober = threading.Thread(target=probe)
    prober.start()
    seen = rig.send_voices(40, latency_s=1.0, stagger_s=0.005, settle_s=0.2, cs_wait_s=5.0)  # 5 s × 0.2
    prober.join()
    assert_one_answer_each(seen, rig, 1.0)  # every first try held (the result cannot exist yet), none refused
    assert all(s.passive for s in seen), [s.statuses for s in seen]
    assert health == [200]


def test_real_clock_seven_second_recognition(rigs: dict[str, Rig]) -> None:
    """WeChat's own clock, once: 5 s tries, 4.5 s budget, 7 s recognition → the second try answers."""
    seen = rigs["real"].send_voices(2, latency_s=7.0, settle_s=0.2)
    assert_one_answer_each(seen, rigs["real"], 7.0)
    assert all(s.statuses == ["timeout", "reply"] for s in seen), seen
    assert all(6.9 < (s.answered_s or 0) < 9.5 for s in seen), [s.answered_s for s in seen]


def test_killed_worker_loses_nothing(rigs: dict[str, Rig]) -> None:
    """``kill -9`` of the gunicorn worker whose thread runs the job: the next try takes the job over."""
    rig = rigs["fifth"]
    assert rig.server is not None
    rig.sandbox.configure(recognition_latency_s=1.0)
    media_id = rig.sandbox.register_voice(SENTENCE, duration_s=0.5)["media_id"]
    msg_id = messages.next_msg_id()
    result: list[Seen] = []
    sender = threading.Thread(target=lambda: result.append(
        rig.client(settle_s=0.3, cs_wait_s=4.0).voice(media_id, openid=openid("k"), msg_id=msg_id)))
    sender.start()
    with open_store(f"sqlite:///{rig.db}", prefix=rig.config.storage.prefix) as store:
        owner = wait_for(lambda: job_owner(store, msg_id), 3.0)
        assert owner and owner.startswith("thread@"), owner
        os.kill(owner_pid(owner), signal.SIGKILL)
        sender.join(timeout=15)
        state = store.get(f"dl:m:{msg_id}")
    assert result, "the WeChat client never finished"
    assert result[0].answers == [ANSWER], (result[0], state)
    assert result[0].statuses[0] == "error"  # the try held by the killed worker: connection reset
    assert rig.server.wait_for_log(f"delivery msg_id={msg_id} taking the job over", 1)
