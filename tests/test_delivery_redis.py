"""The scale-out topology: gunicorn (2 workers) on a Redis store, jobs on an RQ worker (``python -m bot worker``).

The web tier only claims, waits and answers; recognition and handlers run in the RQ worker's work horses. A
work horse killed with ``kill -9`` mid-job stops its heartbeat, and the next try enqueues the job again.
Needs Redis (``REDIS_URL``, default db 15): skipped without it, failed without it when ``CI=true``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import write_config_file
from delivery_support import (
    ANSWER,
    SENTENCE,
    job_owner,
    openid,
    problems,
    sections,
    start_gunicorn_conf,
    start_rq_worker,
    start_sandbox,
    stop_process,
    wait_for,
)

from bot.config import load_config
from bot.delivery.leases import owner_pid
from bot.store import open_store
from bot.testing import Seen, WeChatRetryClient, messages

# WeChat's clock × 0.2, not × 0.1: an RQ job pays a fork and fresh connections (~0.1-0.3 s) that do not
# scale down with the clock.
SCALE = 0.2
from redis_support import drop_prefix, require_redis, unique_prefix  # noqa: E402


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    url = require_redis()
    directory = tmp_path_factory.mktemp("redis-rq")
    prefix, queue = unique_prefix("delivery"), f"wvbtest-{uuid.uuid4().hex[:8]}"
    sandbox = start_sandbox()
    config_path = write_config_file(directory, **sections(
        sandbox.url, store=url, prefix=prefix, scale=SCALE, reply={"executor": "rq", "queue": queue}))
    started: list[subprocess.Popen[bytes]] = []
    server = None
    try:
        worker = start_rq_worker(config_path, directory)
        started.append(worker)
        server = start_gunicorn_conf(config_path, directory, workers=2, threads=8)
        yield SimpleNamespace(url=url, prefix=prefix, sandbox=sandbox, server=server, worker=worker,
                              config=load_config(config_path), store=open_store(url, prefix=prefix))
    finally:
        if server is not None:
            server.stop()
        for proc in started:
            stop_process(proc)
        sandbox.stop()
        drop_prefix(url, prefix)
        drop_prefix(url, f"rq:*:{queue}")
        forget_queue(url, queue)


def forget_queue(url: str, queue: str) -> None:
    """RQ lists every queue it has seen in ``rq:queues``; take this test's out again."""
    import redis
    client = redis.Redis.from_url(url)
    try:
        client.srem("rq:queues", f"rq:queue:{queue}")
    finally:
        client.close()


def send(rig: SimpleNamespace, latency_s: float, msg_id: int | None = None) -> Seen:
    rig.sandbox.configure(recognition_latency_s=latency_s)
    media_id = rig.sandbox.register_voice(SENTENCE, duration_s=0.5)["media_id"]
    client = WeChatRetryClient(rig.config, rig.server.url, rig.sandbox.url, wait_s=5.0 * SCALE, cs_wait_s=5.0,
                               settle_s=0.3)
    return client.voice(media_id, openid=openid("r"), msg_id=msg_id or messages.next_msg_id())


@pytest.mark.parametrize("latency_s,quiet", [(0.1, ["reply"]), (1.4, ["timeout", "reply"]),
                                             (4.0, ["timeout", "timeout", "success"])])
def test_rq_worker_answers_exactly_once(rig: SimpleNamespace, latency_s: float, quiet: list[str]) -> None:
    """Recognition of 0.5, 7 and 20 s (× 0.2): first try, second try (a try later on a busy machine),
    customer service after the last."""
    seen = send(rig, latency_s)
    assert problems(seen, "auto", latency_s, SCALE) == [], seen
    if latency_s == 4.0:
        assert seen.statuses == quiet, seen
    log = Path(rig.worker.log_path).read_text(errors="replace")
    assert "Successfully completed answer m:" in log  # the job ran in the RQ worker, not in gunicorn
    assert "fetched access token" not in rig.server.log()  # gunicorn never recognized anything itself


def test_killed_work_horse_loses_nothing(rig: SimpleNamespace) -> None:
    """``kill -9`` of the RQ work horse running the job: its heartbeat stops, a try re-enqueues, one answer."""
    msg_id = messages.next_msg_id()
    result: list[Seen] = []
    sender = threading.Thread(target=lambda: result.append(send(rig, 1.0, msg_id)))
    sender.start()
    owner = wait_for(lambda: (o := job_owner(rig.store, msg_id)) and o.startswith("job@") and o, 3.0)
    assert owner, rig.store.get(f"dl:m:{msg_id}")
    os.kill(owner_pid(owner), signal.SIGKILL)
    sender.join(timeout=10)
    assert result and result[0].answers == [ANSWER], (result, rig.store.get(f"dl:m:{msg_id}"))
    assert not result[0].error_shown
    assert rig.server.wait_for_log(f"delivery msg_id={msg_id} taking the job over", 1)
    assert rig.worker.poll() is None  # the worker itself lives on and ran the job again
