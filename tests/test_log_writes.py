"""The log handler's shared writes (bot/ops/logs.py, SharedWritesHandler): a thread that logs while another
writes does not wait for it — that thread writes its line too, in order — and under many threads every line is
written once and whole, to a real file."""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from redis_support import race_threads

from bot.config import load_config
from bot.ops.logs import SharedWritesHandler, install_handler
from bot.testing import BotClient


class SlowFirstWrite:
    """A stream whose first write blocks until released (a full pipe, a slow disk)."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def write(self, text: str) -> int:
        if not self.written:
            self.written.append(text)
            self.entered.set()
            assert self.release.wait(10)
            return len(text)
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    return logger


def test_a_thread_that_logs_while_another_writes_does_not_wait_and_its_line_follows() -> None:
    stream = SlowFirstWrite()
    handler = SharedWritesHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = _logger("test.shared_writes", handler)
    first = threading.Thread(target=logger.info, args=("msg_id=1 first",))
    first.start()
    assert stream.entered.wait(5)
    returned = threading.Event()

    def second() -> None:
        logger.info("msg_id=2 second")
        logger.info("msg_id=3 third")
        returned.set()
    threading.Thread(target=second).start()
    assert returned.wait(5)  # the stdlib handler would have held it on its lock until the first write ended
    assert stream.written == ["msg_id=1 first\n"]
    stream.release.set()
    first.join(5)
    assert "".join(stream.written) == "msg_id=1 first\nmsg_id=2 second\nmsg_id=3 third\n"
    assert stream.written[1:] == ["msg_id=2 second\nmsg_id=3 third\n"]  # written by the first thread, at once


def test_many_threads_lines_are_each_written_once_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "bot.log"
    with path.open("w", encoding="utf-8") as f:
        handler = install_handler("INFO", stream=f, logger=logging.getLogger("test.shared_file"))
        logger = logging.getLogger("test.shared_file")
        logger.propagate = False
        race_threads(16, lambda: [logger.info("msg_id=%s line %s", threading.get_ident(), i) for i in range(200)])
        logger.removeHandler(handler)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 16 * 200
    assert all(" INFO " in ln and ln.rstrip().split(" line ")[1].isdigit() for ln in lines), lines[:3]
    per_thread: dict[str, list[int]] = {}
    for ln in lines:
        ident, n = ln.split("msg_id=")[1].split(" line ")
        per_thread.setdefault(ident, []).append(int(n))
    assert len(per_thread) == 16 and all(v == list(range(200)) for v in per_thread.values())  # each in order


# -- batched writes (batch_s: gunicorn's workers) ---------------------------------------------------------------

class Recording:
    """A stream that records each write and the thread that made it."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.writes.append((text, threading.get_ident()))
        return len(text)

    def flush(self) -> None:
        pass

    def texts(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.writes]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.texts()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.texts()


def _batched(name: str, batch_s: float) -> tuple[logging.Logger, SharedWritesHandler, Recording]:
    stream = Recording()
    handler = SharedWritesHandler(stream, batch_s=batch_s)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(message)s"))
    return _logger(name, handler), handler, stream


def test_batched_lines_that_come_fast_are_written_together_by_the_flusher_not_their_threads() -> None:
    logger, _, stream = _batched("test.batched.fast", batch_s=0.5)
    logger.info("msg_id=1 first")  # nothing written for a while: at once, by its own thread
    assert stream.texts() == ["msg_id=1 first\n"]
    logger.info("msg_id=2 second")
    logger.info("msg_id=3 third")
    assert stream.texts() == ["msg_id=1 first\n"]  # came within batch_s of the last write: queued, not written
    written = stream.wait_for(2)
    assert written == ["msg_id=1 first\n", "msg_id=2 second\nmsg_id=3 third\n"]  # one write for both
    assert stream.writes[1][1] != threading.get_ident()  # by the flusher thread


def test_a_warning_is_written_at_once_with_the_lines_queued_before_it() -> None:
    logger, _, stream = _batched("test.batched.warning", batch_s=5.0)
    logger.info("msg_id=1 first")
    logger.info("msg_id=2 queued")
    logger.warning("msg_id=3 store failed")
    assert stream.texts() == ["msg_id=1 first\n", "msg_id=2 queued\nmsg_id=3 store failed\n"]


def test_a_line_after_a_quiet_spell_is_written_at_once() -> None:
    logger, _, stream = _batched("test.batched.quiet", batch_s=0.05)
    logger.info("msg_id=1 first")
    time.sleep(0.2)  # longer than batch_s since the last write
    logger.info("msg_id=2 later")
    assert stream.texts() == ["msg_id=1 first\n", "msg_id=2 later\n"]


def test_flush_writes_the_queued_lines_as_logging_shutdown_does_at_exit() -> None:
    logger, handler, stream = _batched("test.batched.flush", batch_s=5.0)
    logger.info("msg_id=1 first")
    logger.info("msg_id=2 queued")
    assert stream.texts() == ["msg_id=1 first\n"]
    handler.flush()
    assert "".join(stream.texts()) == "msg_id=1 first\nmsg_id=2 queued\n"
    time.sleep(0.1)
    assert "".join(stream.texts()) == "msg_id=1 first\nmsg_id=2 queued\n"  # the flusher writes nothing twice


@pytest.mark.parametrize("batch_s", [0.0, 0.01])
def test_many_threads_batched_lines_are_each_written_once_and_in_order(tmp_path: Path, batch_s: float) -> None:
    path = tmp_path / "bot.log"
    with path.open("w", encoding="utf-8") as f:
        logger = logging.getLogger(f"test.batched_file{batch_s}")
        logger.propagate = False
        handler = install_handler("INFO", stream=f, logger=logger, batch_s=batch_s)
        race_threads(16, lambda: [logger.info("msg_id=%s line %s", threading.get_ident(), i) for i in range(200)])
        handler.flush()
        logger.removeHandler(handler)
    per_thread: dict[str, list[int]] = {}
    for ln in path.read_text(encoding="utf-8").splitlines():
        ident, n = ln.split("msg_id=")[1].split(" line ")
        per_thread.setdefault(ident, []).append(int(n))
    assert len(per_thread) == 16 and all(v == list(range(200)) for v in per_thread.values())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_writes_its_own_lines_at_once_and_not_its_parents(tmp_path: Path) -> None:
    path = tmp_path / "bot.log"
    with path.open("w", encoding="utf-8", buffering=1) as f:
        logger = logging.getLogger("test.batched_fork")
        logger.propagate = False
        handler = install_handler("INFO", stream=f, logger=logger, batch_s=5.0)
        logger.info("parent 1")
        logger.info("parent 2 queued")  # queued in the parent when it forks
        pid = os.fork()
        if pid == 0:  # the child ends as an RQ work horse does: os._exit, no atexit
            try:
                logger.info("child 1")
                logger.info("child 2")
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        text = path.read_text(encoding="utf-8")
        assert "child 1\n" in text and "child 2\n" in text  # written at once: the child had no time to batch
        assert "parent 2 queued" not in text  # the parent's queued line is its own to write (in 5 s, or at flush)
        handler.flush()
        logger.removeHandler(handler)
    lines = [ln.split(": ", 1)[1] for ln in path.read_text(encoding="utf-8").splitlines()]
    assert sorted(lines) == ["child 1", "child 2", "parent 1", "parent 2 queued"]  # each once


def test_gunicorn_workers_write_every_message_line_under_load_and_by_their_exit(write_config: Any,
                                                                               gunicorn_factory: Any) -> None:
    """The workers batch their lines (bot/web/preflight.py): 120 messages from 12 threads each get their
    ``bot.message`` line within a moment while the server runs, and every line is in the log after a stop."""
    path = write_config()
    server = gunicorn_factory(path, workers=2, threads=8)
    client = BotClient(load_config(path), url=server.url)
    base = 7_300_000_000 + int(time.time()) % 1_000_000 * 1000

    def send(i: int) -> str:
        return client.text(f"hello {i}", msg_id=base + i).content
    with ThreadPoolExecutor(12) as pool:
        assert len([c for c in pool.map(send, range(120)) if c]) == 120
    running = server.wait_for_log("INFO bot.message", 120, timeout=5)
    assert len(running) == 120
    with ThreadPoolExecutor(12) as pool:  # a second burst, then the stop at once: lines queued are written at exit
        assert len([c for c in pool.map(send, range(120, 180)) if c]) == 60
    server.stop()
    lines = server.log_lines("INFO bot.message")
    ids = sorted(int(ln.split("msg_id=")[1].split()[0]) - base for ln in lines)
    assert ids == list(range(180))  # each once


class BlocksOn(Recording):
    """A stream whose write of a text holding ``BLOCK`` blocks until released (a full pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def write(self, text: str) -> int:
        if "BLOCK" in text:
            self.entered.set()
            assert self.release.wait(10)
        return super().write(text)


def test_the_flusher_waits_without_spinning_while_a_write_blocks() -> None:
    """A thread whose write blocks (a full pipe) holds the writing turn while the flusher is armed: the flusher
    looks again a batch_s later; it does not spin on the turn (the last write's time stays old while it blocks)."""
    stream = BlocksOn()
    handler = SharedWritesHandler(stream, batch_s=0.02)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = _logger("test.batched.blocked", handler)
    logger.info("msg_id=1 first")  # at once
    logger.info("msg_id=2 queued")  # within batch_s: the flusher is armed
    warning = threading.Thread(target=logger.warning, args=("msg_id=3 BLOCK",))  # at once, with line 2: blocks
    warning.start()
    assert stream.entered.wait(5)
    flusher = handler._flusher
    assert flusher is not None and flusher.native_id is not None

    def cpu_ticks() -> int:  # the flusher thread's own user + system time, in clock ticks
        fields = Path(f"/proc/self/task/{flusher.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    before = cpu_ticks()
    time.sleep(0.5)  # the write stays blocked; the armed flusher must not burn this half second
    spent = (cpu_ticks() - before) / os.sysconf("SC_CLK_TCK")
    stream.release.set()
    warning.join(5)
    assert spent <= 0.03, f"the flusher spent {spent:.2f} s of CPU while a write was blocked"
    assert "".join(stream.wait_for(2)) == "msg_id=1 first\nmsg_id=2 queued\nmsg_id=3 BLOCK\n"
