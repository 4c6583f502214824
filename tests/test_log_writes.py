"""The log handler's shared writes (bot/ops/logs.py, SharedWritesHandler): a thread that logs while another
writes does not wait for it — that thread writes its line too, in order — and under many threads every line is
written once and whole, to a real file."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from redis_support import race_threads

from bot.ops.logs import SharedWritesHandler, install_handler


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
