"""Helpers for tests that run against real store backends (Redis above all) and across processes.

A plain module the test files import. Redis is optional on a laptop (the tests skip with the reason)
but required in CI: with ``CI=true`` an unreachable Redis fails the run instead of silently skipping.
Every test gets its own key prefix and its keys are deleted afterwards, so tests can share db 15.
"""
from __future__ import annotations

import importlib
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.store import StoreError, open_store

BACKENDS = ("memory", "sqlite", "redis")
PROCESSES = 4
T = TypeVar("T")


def redis_url() -> str:
    """The Redis the tests use: ``$REDIS_URL``, default db 15 on localhost."""
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def require_redis() -> str:
    """The Redis URL if it answers; otherwise skip the test, or fail it in CI (``CI=true``)."""
    url = redis_url()
    try:
        with open_store(url) as store:
            store.ping()
    except StoreError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but Redis is unreachable: {exc}")
        pytest.skip(f"Redis not available ({exc}); set REDIS_URL or start redis-server")
    return url


def unique_prefix(tag: str = "t") -> str:
    return f"wvbtest:{tag}:{uuid.uuid4().hex[:12]}:"


def drop_prefix(url: str, prefix: str) -> None:
    """Delete every Redis key under ``prefix`` (the Store interface has no scan, on purpose)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_target() -> Iterator[tuple[str, str]]:
    """``(url, prefix)`` of a reachable Redis with a fresh prefix, cleaned up after the test."""
    url = require_redis()
    prefix = unique_prefix("redis")
    yield url, prefix
    drop_prefix(url, prefix)


def backend_target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """``(url, prefix)`` for one backend: memory, a temp SQLite file, or Redis (via ``redis_target``)."""
    if kind == "memory":
        return "memory://", unique_prefix("mem")
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'store.db'}", unique_prefix("sqlite")
    if kind == "redis":
        return request.getfixturevalue("redis_target")
    raise ValueError(kind)


@pytest.fixture(params=BACKENDS)
def any_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """``(url, prefix)`` for each backend in turn."""
    return backend_target(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", "redis"])
def shared_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """``(url, prefix)`` for each backend that several processes can share."""
    return backend_target(request.param, request, tmp_path)


_pool: Pool | None = None


@pytest.fixture(scope="module")
def spawn_pool(request: pytest.FixtureRequest) -> Pool:
    """Worker processes started with 'spawn' (fresh interpreters, like separate gunicorn workers).

    One pool for the whole session, because an interpreter start costs far more than the races. The
    workers import the requesting test module as they start, so a module that requests the pool early
    (see ``pytestmark`` there) overlaps that start-up with its quick tests.
    """
    global _pool
    module = request.module.__name__
    if _pool is None:
        ctx = multiprocessing.get_context("spawn")
        _pool = ctx.Pool(PROCESSES, initializer=importlib.import_module, initargs=(module,))
        request.config.add_cleanup(_stop_pool)
    else:
        _pool.map_async(importlib.import_module, [module] * PROCESSES)  # warm up, don't wait
    return _pool


def _stop_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.terminate()
        _pool.join()
        _pool = None


def race_threads(threads: int, work: Callable[[], T]) -> list[T | Exception]:
    """Run ``work`` on ``threads`` threads released together; results (or raised exceptions) in order."""
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except Exception as exc:  # noqa: BLE001 - returned so the test can assert on it
            results[i] = exc

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(10)
    return results


def start_time(delay: float = 0.15) -> float:
    """A wall-clock instant a little ahead, so worker processes start racing together."""
    return time.time() + delay


def wait_until(at: float) -> None:
    """Sleep, then spin for the last few milliseconds: processes must really start together."""
    time.sleep(max(0.0, at - time.time() - 0.005))
    while time.time() < at:
        pass
