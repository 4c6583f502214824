"""The ``bot.message`` line's fast path (bot/ops/trace.py ``_log``, the redaction pre-tests in bot/ops/logs.py)
gives what the plain path gave: the same record as ``log.log``, the same redaction as running every pattern."""
from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BASE_CONFIG, merge
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from bot.config import config_from_dict
from bot.ops import logs, metrics, trace
from bot.ops.account import serving
from bot.ops.logs import ANSI, EVENT_ID, OPENID_PARAM, SECRET_PARAM, RedactFilter, may_hold_secret_param, setup_logging

SECRETS = ["conftest-secret", "conftest-token", "s3cr"]


def slow_redact(text: str, secrets: list[str], hashed: Any) -> str:
    """RedactFilter.redact before the pre-tests: every pattern on every text."""
    text = ANSI.sub("", text)
    text = SECRET_PARAM.sub(lambda m: f"{m.group(1)}***", text)
    if hashed is not None:
        text = OPENID_PARAM.sub(lambda m: f"{m.group(1)}{hashed(m.group(2))}", text)
        text = EVENT_ID.sub(lambda m: f"{m.group(1)}{hashed(m.group(2))}", text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def short_hash(openid: str) -> str:
    return f"h{len(openid):02d}"


PIECES = ["secret", "SECRET", "ſecret", "Secret", "access_token", "ACCESS_TOKEN", "acceſſ_to\u212aen", "=", ":", " ",
          '"', "'", "&", "?", "openid=", "msg_id", "msg_id=", '"msg_id": "', "oABCDEFGHIJKLMNOPQRSTUVWXYZ12", ":1700",
          "\x1b[31m", "\x1b[0m", "conftest-secret", "s3cr", "tok", "x", "7", "ſ", "\u212a", "İ", "message "]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=14).map("".join))
def test_redaction_with_pre_tests_equals_running_every_pattern(text: str) -> None:
    for hashed in (None, short_hash):
        assert RedactFilter(SECRETS, hashed).redact(text) == slow_redact(text, SECRETS, hashed), text


def test_the_secret_pre_test_misses_no_case_variant() -> None:
    """Why lower-casing is a safe pre-test: among the letters of "ecret" and "acce", IGNORECASE matches no
    character that does not lower-case to them (the ſ it matches for s is outside both)."""
    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    assert {c for c in re.findall("(?i)[ecrta]", everything) if c.lower() not in "ecrta"} == set()
    for text in ["url?ACCESS_TOKEN=abc", "ſecret=abcd", "{'SeCrEt': 'abcd'}", "acceſſ_to\u212aen=abcd"]:
        assert may_hold_secret_param(text) and SECRET_PARAM.search(text), text


# -- the record and the line ---------------------------------------------------------------------------
class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[Keep]:
    keep = Keep()
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(keep)
    root.setLevel(logging.INFO)
    yield keep
    root.removeHandler(keep)
    root.setLevel(level)
    for handler in [h for h in root.handlers if getattr(h, "_wvb", False)]:
        root.removeHandler(handler)


TRACE = {"msg_id": "1796171487000496", "openid": "ce656df4d6d5", "type": "voice",
         "steps": {"download": 12.0, "poll": 310.5}, "recognizer": "wechat", "outcome": "answered"}


def make_trace(**extra: Any) -> trace.Trace:
    return trace.Trace(**{**TRACE, "steps": dict(TRACE["steps"]), **extra})  # type: ignore[arg-type]


VOLATILE = {"created", "msecs", "relativeCreated", "lineno", "pathname", "filename", "module", "funcName"}


def test_emit_makes_the_record_log_log_made(kept: Keep, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "message_done", lambda fields: None)
    trace.emit(make_trace(), "retry", tries=2, sent=False, reason="a b")
    fields = {**TRACE, "path": "retry", "tries": 2, "sent": False, "reason": "a b"}
    trace.log.log(logging.ERROR, "message %s", trace._text(fields), extra={"fields": fields, "fields_in_message": True})
    fast, plain = kept.records
    assert {k: v for k, v in vars(fast).items() if k not in VOLATILE} == \
        {k: v for k, v in vars(plain).items() if k not in VOLATILE}
    assert (fast.pathname, fast.filename, fast.module, fast.funcName) == (trace.__file__, "trace.py", "trace", "emit")
    assert 0 < fast.lineno < plain.lineno or fast.pathname != plain.pathname  # emit's own line, as findCaller saw it
    assert fast.getMessage() == ('message msg_id=1796171487000496 openid=ce656df4d6d5 type=voice '
                                 'steps=download:12,poll:310.5 recognizer=wechat outcome=answered path=retry '
                                 'tries=2 sent=false reason="a b"')


def make_config(**logging_: Any) -> Any:
    return config_from_dict(merge(BASE_CONFIG, {"logging": logging_}))


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_secret_in_the_line_is_redacted_and_the_line_is_otherwise_unchanged(kept: Keep, fmt: str,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "message_done", lambda fields: None)
    config = make_config(format=fmt)
    stream = io.StringIO()
    setup_logging(config, stream=stream)
    leak = "provider said: bad key conftest-secret, see https://x/?access_token=TOKEN123&openid=oRAWOPENID1234567"
    trace.emit(make_trace(synthesis_error=leak), "passive", tries=1)
    trace.emit(make_trace(), "passive", tries=1)
    first, second = stream.getvalue().splitlines()
    for line in (first, second):
        assert "conftest-secret" not in line and "TOKEN123" not in line and "oRAWOPENID1234567" not in line
    redacted = ('provider said: bad key ***, see https://x/?access_token=***&openid='
                f'{trace.hash_openid(config, "oRAWOPENID1234567")}')
    text = ("message msg_id=1796171487000496 openid=ce656df4d6d5 type=voice steps=download:12,poll:310.5 "
            "recognizer=wechat outcome=answered")
    if fmt == "text":
        assert first.endswith(f" INFO bot.message: {text} synthesis_error={json.dumps(redacted)} path=passive tries=1")
        assert second.endswith(f" INFO bot.message: {text} path=passive tries=1")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO bot\.message: .*", second)
    else:
        record = json.loads(first)
        assert record["synthesis_error"] == redacted and redacted in record["message"]
        plain = json.loads(second)
        assert list(plain) == ["ts", "level", "logger", "message", *TRACE, "path", "tries"]
        assert plain["message"] == f"{text} path=passive tries=1" and plain["steps"] == TRACE["steps"]
    assert kept.records[0].fields["synthesis_error"] == redacted  # the structured fields too, for every handler
    assert kept.records[1].fields == {**TRACE, "path": "passive", "tries": 1}


def test_fields_of_a_clean_line_are_not_dumped_but_a_secret_in_them_still_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The message of a bot.message line is its fields, ``key=value``: when redacting it changed nothing, there
    is nothing to hide in the fields either (one JSON encoding per message saved); when it did, they are
    redacted too. A secret with a quote or backslash (which a nested value's repr escapes) always scans them."""
    dumped: list[object] = []
    real = logs._dumps
    monkeypatch.setattr(logs, "_dumps", lambda data: dumped.append(data) or real(data))

    def line(secrets: list[str], fields: dict[str, object]) -> logging.LogRecord:
        record = logging.LogRecord("bot.message", logging.INFO, __file__, 1, "message %s", (trace._text(fields),),
                                   None)
        record.fields, record.fields_in_message = fields, True  # type: ignore[attr-defined]
        RedactFilter(secrets).filter(record)
        return record
    line(["sekret-1234"], dict(TRACE))
    assert dumped == []
    leaked = line(["sekret-1234"], {**TRACE, "error": {"detail": "bad key sekret-1234"}})
    assert leaked.fields["error"] == {"detail": "bad key ***"} and "sekret-1234" not in leaked.getMessage()  # type: ignore[attr-defined]
    line(['quo"ted-secret'], dict(TRACE))
    assert len(dumped) == 2


def test_json_dumps_shortcut_is_json_dumps() -> None:
    data = {"a": "é \x1b", "b": [1, 2.5, None, True], "c": {"d": object}}
    assert logs._dumps(data) == json.dumps(data, ensure_ascii=False, default=str)


def test_text_formatter_is_logging_formatter_with_the_time_built_once_a_second() -> None:
    plain, fast = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"), logs.TextFormatter()
    for created in [1700000000.0, 1700000000.999, 1700000001.0015, 1700000000.5, 1700003600.25]:
        record = logging.LogRecord("bot.x", logging.WARNING, __file__, 1, "m %s", ("a",), None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert fast.format(record) == plain.format(record)


def test_an_openid_hashed_by_one_bots_filter_is_not_hashed_again_by_anothers() -> None:
    """Two bots in one process (two configs, or a mounted bot and the root handler) each filter a request line:
    the openid is hashed once, by the first, not re-hashed into something no bot.message line shows."""
    import hashlib

    def bot_a(openid: str) -> str:
        return hashlib.sha256(b"a" + openid.encode()).hexdigest()[:12]

    def bot_b(openid: str) -> str:
        return hashlib.sha256(b"b" + openid.encode()).hexdigest()[:12]
    line = "POST /wechat?signature=x&openid=oRAWOPENID1234567890abcdefgh&nonce=1"
    once = RedactFilter([], bot_a).redact(line)
    assert f"openid={bot_a('oRAWOPENID1234567890abcdefgh')}&" in once
    assert RedactFilter([], bot_b).redact(once) == once


def test_message_done_counts_every_message_of_a_kind_for_its_own_account() -> None:
    """message_done finds a kind's metrics once (account, type, outcome, path, steps): each later message of that
    kind still counts, for its own account — named in the fields, or the work's current one."""
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    kind = {"type": "text", "outcome": "answered", "path": "passive"}
    before = {a: (value("wvb_messages_total", account=a, type="text", outcome="answered"),
                  value("wvb_deliveries_total", account=a, path="passive"),
                  value("wvb_step_seconds_count", account=a, step="kindtest"),
                  value("wvb_step_seconds_sum", account=a, step="kindtest")) for a in ("shop", "news", "blog")}
    for _ in range(3):
        metrics.message_done({"account": "shop", **kind, "steps": {"kindtest": 2.0}})
    metrics.message_done({"account": "news", **kind, "steps": {"kindtest": 4.0}})
    with serving("blog"):
        metrics.message_done({**kind, "steps": {"kindtest": 8.0}})
    for account, n, ms in (("shop", 3, 6.0), ("news", 1, 4.0), ("blog", 1, 8.0)):
        m, d, c, s = before[account]
        assert value("wvb_messages_total", account=account, type="text", outcome="answered") == m + n
        assert value("wvb_deliveries_total", account=account, path="passive") == d + n
        assert value("wvb_step_seconds_count", account=account, step="kindtest") == c + n
        assert value("wvb_step_seconds_sum", account=account, step="kindtest") == pytest.approx(s + ms / 1000)
    for i in range(1100):  # many kinds (steps named by a handler): the kinds remembered stay bounded
        metrics.message_done({"account": "shop", **kind, "steps": {f"kind{i}": 1.0}})
    assert 0 < len(metrics._done) <= 1024
    assert value("wvb_step_seconds_count", account="shop", step="kind5") == 1
