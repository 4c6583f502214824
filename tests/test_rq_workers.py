"""``executor = "rq"`` with no worker listening is said, not silent (issue 22, item 5): ``check`` lists the workers
on the queue (none is a failure with the command that starts one), and a web process whose jobs wait past their
budget with no worker alive logs one ERROR line with that command.

Needs Redis (``REDIS_URL``, default db 15): skipped without it, failed without it when ``CI=true``.
"""
from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_cli, write_config_file
from delivery_support import local_bot, recording_logs, sections, start_rq_worker, stop_process, wait_for
from redis_support import drop_prefix, require_redis, unique_prefix

from bot.config import load_config
from bot.testing import BotClient

ERROR = "RQ: jobs wait on queue"


@pytest.fixture
def rq(tmp_path: Path) -> Iterator[SimpleNamespace]:
    url = require_redis()
    prefix, queue = unique_prefix("rqwatch"), f"wvbtest-{uuid.uuid4().hex[:8]}"
    path = write_config_file(tmp_path, **sections("http://127.0.0.1:9", store=url, prefix=prefix,
                                                  reply={"executor": "rq", "queue": queue}))
    try:
        yield SimpleNamespace(path=path, queue=queue, config=load_config(path, env={}))
    finally:
        from redis import Redis
        from rq import Queue
        Queue(queue, connection=Redis.from_url(url)).delete(delete_jobs=True)
        drop_prefix(url, prefix)


def workers_line(path: Path) -> tuple[int, str]:
    result = run_cli("check", "--config", str(path), env={"PYTHONIOENCODING": "utf-8"})
    return result.returncode, next(line for line in result.stdout.splitlines() if "RQ workers" in line)


def test_check_lists_the_workers_on_the_queue(rq: SimpleNamespace, tmp_path: Path) -> None:
    code, line = workers_line(rq.path)
    assert code == 1 and line == (f"✗ RQ workers (queue {rq.queue!r}): none is listening: voice messages would wait "
                                  f"unanswered; start one with `python -m bot worker --config {rq.path}`")
    worker: subprocess.Popen[bytes] = start_rq_worker(rq.path, tmp_path)
    try:
        _, line = workers_line(rq.path)
    finally:
        stop_process(worker)
    assert line.startswith(f"✓ RQ workers (queue {rq.queue!r}): 1 listening ("), line


def test_jobs_waiting_with_no_worker_are_one_error_line(rq: SimpleNamespace) -> None:
    with recording_logs() as logs, local_bot(rq.config) as bot:
        client = BotClient(bot.webhook)
        assert client.voice("media-1").is_success  # held: no worker will ever answer it
        assert wait_for(lambda: logs.lines(ERROR), timeout=5.0), logs.messages
        assert client.voice("media-2").is_success
        wait_for(lambda: len(logs.lines(ERROR)) > 1, timeout=1.0)
    [line] = logs.lines(ERROR)  # rate-limited: one line for both
    assert line == (f"ERROR bot.executor: RQ: jobs wait on queue {rq.queue!r} and no worker is listening: messages go "
                    "unanswered until one runs. Start one with `python -m bot worker --config FILE` (this bot's "
                    "config file)")
