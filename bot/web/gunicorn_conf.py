"""gunicorn settings for wechat-voicebot, shipped with the package: ``gunicorn -c python:bot.web.gunicorn_conf``
(the app is ``bot.wsgi:app``), from this checkout or from a project of one's own after ``pip install``. The
checkout's ``gunicorn.conf.py`` is these settings too.

Why threads. WeChat waits 5 s for an answer and then retries. A message whose result is not ready in time is
*held*: its request waits up to ``[reply] budget_s`` for the result, and in ``auto`` mode keeps waiting until
WeChat has dropped it (``wechat_timeout_s``) so that WeChat retries. Each message in flight therefore occupies
one request thread for up to ~5 s at a time. A ``sync`` worker serves one request at a time: one held message
would stall everything behind it. Use ``gthread`` (threads share one process; recognition runs on the job
threads, ``[reply] threads``, so request threads mostly sleep). Async workers (gevent/eventlet) would also
hold cheaply, but SQLite and PyAV block the event loop; gthread is the tested choice.

Sizing, per worker process:
- ``threads`` >= messages in flight per worker x 1.1, plus a few for health checks. Messages in flight =
  arrival rate (msg/s) x time to answer (recognition time, capped at ~15 s by WeChat's three tries), divided by
  ``workers``. The 1.1: a held try answers 10% of ``wechat_timeout_s`` after WeChat dropped it (0.5 s, so that
  WeChat is sure to retry), overlapping its own retry that long.
  Example: 20 voice msg/s, 2 s recognition, 2 workers -> 20 in flight per worker -> threads = 24 or more.
- ``[reply] threads`` (job threads, executor = "threads") >= voice messages in flight per worker, too.
- A request that finds every thread busy queues; queueing eats into WeChat's 5 s before ``budget_s`` starts.
- Memory: a thread is cheap (its stack is mostly untouched); see ``benchmarks/delivery.py`` for measured RSS.

Metrics ([metrics] enabled): each worker process counts for itself. Export ``PROMETHEUS_MULTIPROC_DIR`` (an empty
directory, emptied at each deploy) before starting gunicorn and prometheus_client shares the counters through
files there, so ``/metrics`` answers the sum over all workers; without it, each scrape sees one worker.

Environment overrides: ``WVB_BIND`` (default 127.0.0.1:8080), ``WEB_CONCURRENCY`` (workers, default 2),
``WVB_THREADS`` (threads per worker, default 64). Command-line flags override these settings.
"""
import os

__all__ = ["bind", "control_socket_disable", "graceful_timeout", "threads", "timeout", "worker_class", "workers",
           "wsgi_app"]

wsgi_app = "bot.wsgi:app"
bind = os.environ.get("WVB_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WVB_THREADS", "64"))
# For gthread, timeout is how long the worker's main loop may go silent, not a request limit: held
# requests do not trip it.
timeout = 30
graceful_timeout = 10  # long enough for held tries (<= wechat_timeout_s) to finish on a restart
# gunicorn 27's control socket has one fixed path per user (~/.gunicorn/gunicorn.ctl): a second bot (or a
# test's server) on the machine would take it over from the first. Nothing here uses it.
control_socket_disable = True

# The config is checked here, in the master, before any worker starts: a mistake is the one line `serve` prints
# ("config error: [voice] lang: ..."), and gunicorn exits 2 at once instead of a traceback per worker. This also
# imports the configured routers in the master (a router that cannot be imported is a config error too).
from bot.web.preflight import preflight  # noqa: E402

preflight()
