"""Prometheus metrics, and what the ``/metrics`` endpoint (``[metrics]``, off by default; the view is in
bot/web/metrics.py) serves.

Counting always happens (a counter increment is cheaper than a config check); only the endpoint is switched.
Under gunicorn every worker has its own counters: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
before the workers start and prometheus_client writes them to shared files, which one scrape adds up.
Without it, a scrape sees only the worker that answered it.
"""
from __future__ import annotations

import hmac
import os
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from bot.ops.account import metrics_label

if TYPE_CHECKING:
    from bot.config import Config

REQUESTS = Counter("wvb_requests", "Callback requests by outcome (accepted, rejected, ignored) and reason "
                   "(why a request was rejected), by account", ["account", "outcome", "reason"])
MESSAGES = Counter("wvb_messages", "Messages handled, by type and outcome (answered, not_understood, "
                   "handler_error, no_answer, unfinished), by account", ["account", "type", "outcome"])
STEP_SECONDS = Histogram("wvb_step_seconds", "Duration of each pipeline step of a message "
                         "(download, transcode, upload, poll, routing, ...), by account", ["account", "step"],
                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2, 4, 8, 15, 30))
RECOGNIZER_SUCCESSES = Counter("wvb_recognizer_successes", "Transcripts produced, by account and recognizer",
                               ["account", "recognizer"])
RECOGNIZER_FAILURES = Counter("wvb_recognizer_failures", "Recognizer failures by recognizer and reason "
                              "(timeout, download_failed, bad_audio, ...), by account", ["account", "recognizer", "reason"])
RECOGNIZER_SECONDS = Histogram("wvb_recognizer_seconds", "How long each recognizer tried, by account, recognizer and "
                               "outcome (ok, or why it failed: empty_final, timeout, unavailable, ...)",
                               ["account", "recognizer", "outcome"],
                               buckets=(.01, .05, .1, .25, .5, 1, 2, 3, 4.5, 8, 15, 30))
SYNTHESES = Counter("wvb_syntheses", "Speech syntheses by synthesizer and outcome (ok, timeout, unavailable, "
                    "bad_audio, too_long, crashed, ...)", ["synthesizer", "outcome"])
SYNTHESIS_SECONDS = Histogram("wvb_synthesis_seconds", "Duration of each synthesizer's try, its audio's transcode "
                              "included, by synthesizer", ["synthesizer"],
                              buckets=(.05, .1, .25, .5, 1, 2, 4, 8, 15, 30))
DELIVERIES = Counter("wvb_deliveries", "Messages by delivery path (passive, retry, customer_service, pickup, "
                     "undeliverable, expired), by account", ["account", "path"])
PICKUPS = Counter("wvb_pickups", "Kept answers (or parts of one) shown with the user's next message")
KEPT = Counter("wvb_kept", "Answers kept for pickup, by account and why (no_customer_service, refused, parts)",
               ["account", "why"])
EXPIRED = Counter("wvb_kept_expired", "Answers kept for pickup that expired before the user wrote again")
SPLITS = Counter("wvb_splits", "Answers split into parts to fit WeChat's text limit")
TYPING = Counter("wvb_typing", "Typing indicators by account and result (sent, failed, refused)", ["account", "result"])
TOKEN_FETCHES = Counter("wvb_token_fetches", "Access-token fetches by endpoint and result (ok, an errcode, "
                        "transport), by account", ["account", "endpoint", "result"])
QUEUE_WAIT = Histogram("wvb_queue_wait_seconds", "How long each callback request waited between WeChat sending it "
                       "and a thread taking it (bot/core/timing.py)",
                       buckets=(.01, .05, .1, .25, .5, 1, 2, 3, 4, 5, 8, 15))
WITHHELD = Counter("wvb_passive_withheld", "Answers a try had but did not send passively: past its budget (on "
                   "WeChat's clock), they went by a later try, customer service or pickup", ["account"])
STORE_ERRORS = Counter("wvb_store_errors", "Store operations that failed, by backend", ["backend"])


_children: dict[tuple[int, tuple[str, ...]], Any] = {}
# Metrics whose first label is the account (bot/ops/account.py): ``labelled`` fills it in.
BY_ACCOUNT = frozenset(map(id, (REQUESTS, MESSAGES, STEP_SECONDS, RECOGNIZER_SUCCESSES, RECOGNIZER_FAILURES,
                                RECOGNIZER_SECONDS, DELIVERIES, KEPT, TYPING, TOKEN_FETCHES, WITHHELD)))


def labelled(metric: Any, *labels: str, account: str | None = None) -> Any:
    """``metric.labels(*labels)``, cached: prometheus_client's lookup costs more than the increment. A metric
    labelled by account gets ``account``, else the account of the current work, first."""
    if id(metric) in BY_ACCOUNT:
        labels = (metrics_label(account), *labels)
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


# message_done's metrics per kind of message: (counters to increment, step histograms in the steps' order)
_done: dict[tuple[str, ...], tuple[tuple[Any, ...], tuple[Any, ...]]] = {}


def message_done(fields: dict[str, Any]) -> None:
    """Count one finished message (``fields`` of its ``bot.message`` line, which names its account). Every
    message counts the same few metrics, found once per kind of message (account, type, outcome, path, steps)."""
    account = metrics_label(fields.get("account"))
    steps = fields.get("steps") or {}
    key = (account, fields.get("type") or "unknown", fields.get("outcome") or "unknown", fields["path"], *steps)
    found = _done.get(key)
    if found is None:
        if len(_done) >= 1024:  # kinds are few; never let them grow without bound
            _done.clear()
        found = _done[key] = ((labelled(MESSAGES, key[1], key[2], account=account),
                               labelled(DELIVERIES, key[3], account=account)),
                              tuple(labelled(STEP_SECONDS, step, account=account) for step in steps))
    for counter in found[0]:
        counter.inc()
    for histogram, ms in zip(found[1], steps.values()):
        histogram.observe(ms / 1000)


def exposition() -> bytes:
    """The text format, summed over gunicorn workers when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def authorized(config: Config, header: str | None) -> bool:
    """No ``[metrics] token``: open; else the exact ``Bearer <token>`` (compared in constant time)."""
    token = config.metrics.token
    return not token or hmac.compare_digest((header or "").encode(), f"Bearer {token}".encode())
