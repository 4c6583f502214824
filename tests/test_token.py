"""One access token for every thread and process: fetched once, refreshed once, never leaked.

Fetches are counted in the store itself (``fetches``), so a count is exact even when the fetching
happens in other processes.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import pytest
from redis_support import (  # noqa: F401 - fixtures are found by name
    any_target,
    race_threads,
    redis_target,
    shared_target,
    spawn_pool,
    start_time,
    wait_until,
)

from bot.config import WeChatConfig
from bot.sandbox import Sandbox
from bot.store import Store, StoreError, open_store
from bot.testing.net import free_port
from bot.voice.audio import transcode_to_mp3
from bot.wechat import WeChatAPI
from bot.wechat.token import AccessTokenManager, TokenError

SECRET = "s3cr3t-app-secret-0123456789abcdef"
PROCESSES = 3

# Start the worker processes with the module so they boot while the quick tests run.
pytestmark = pytest.mark.usefixtures("spawn_pool")


def counting_fetch(store: Store, *, delay: float = 0.1, expires_in: float = 7200,
                   token: str | None = None) -> Callable[[], tuple[str, float]]:
    """A slow fetch that counts its calls in the store; a new token each time unless ``token`` is set."""
    def fetch() -> tuple[str, float]:
        store.incr("fetches")
        time.sleep(delay)
        return token or f"tok-{uuid.uuid4().hex[:8]}", expires_in
    return fetch


def fetches(store: Store) -> int:
    return int(store.get("fetches") or 0)


@pytest.fixture
def store(any_target: tuple[str, str]) -> Iterator[Store]:
    url, prefix = any_target
    with open_store(url, prefix=prefix) as s:
        yield s


# -- one process ------------------------------------------------------------------------------------
def test_concurrent_get_fetches_once(store: Store) -> None:
    manager = AccessTokenManager(store, counting_fetch(store))
    tokens = race_threads(20, manager.get)
    assert len(set(tokens)) == 1 and str(tokens[0]).startswith("tok-")
    assert manager.fetch_count == 1 and fetches(store) == 1
    assert manager.get() == tokens[0] and fetches(store) == 1


def test_cached_with_refresh_margin(store: Store) -> None:
    manager = AccessTokenManager(store, counting_fetch(store, delay=0, expires_in=7200), refresh_margin_s=300)
    manager.get()
    remaining = store.ttl("access_token")
    assert remaining is not None and 6890 < remaining <= 6900


def test_expiry_triggers_one_refetch(store: Store) -> None:
    manager = AccessTokenManager(store, counting_fetch(store, delay=0.02, expires_in=0.2), refresh_margin_s=0)
    first = manager.get()
    assert manager.get() == first
    time.sleep(0.25)
    second = race_threads(10, manager.get)
    assert len(set(second)) == 1 and second[0] != first
    assert manager.fetch_count == 2


def test_refresh_fetches_once_for_many_callers(store: Store) -> None:
    manager = AccessTokenManager(store, counting_fetch(store, delay=0.05))
    stale = manager.get()
    fresh = race_threads(10, lambda: manager.refresh(stale))
    assert len(set(fresh)) == 1 and fresh[0] != stale
    assert manager.fetch_count == 2
    assert manager.get() == fresh[0] and manager.fetch_count == 2


def test_refresh_once_even_when_fetch_returns_the_same_string(store: Store) -> None:
    """stable_token (force_refresh=false) may hand back the very token that was rejected."""
    manager = AccessTokenManager(store, counting_fetch(store, delay=0.05, token="same"))
    assert manager.get() == "same"
    assert race_threads(10, lambda: manager.refresh("same")) == ["same"] * 10
    assert manager.fetch_count == 2


def test_refresh_of_an_already_replaced_token_does_not_fetch(store: Store) -> None:
    """Two managers on one store stand for two worker processes, each with its own memo."""
    fetch = counting_fetch(store, delay=0)
    a, b = AccessTokenManager(store, fetch), AccessTokenManager(store, fetch)
    stale = a.get()
    assert b.get() == stale and b.fetch_count == 0
    fresh = a.refresh(stale)
    assert fresh != stale
    assert b.refresh(stale) == fresh and b.fetch_count == 0
    assert b.get() == fresh
    assert a.refresh(stale) == fresh and fetches(store) == 2


def test_refresh_with_nothing_stored_fetches(store: Store) -> None:
    manager = AccessTokenManager(store, counting_fetch(store, delay=0))
    assert manager.refresh("never-seen").startswith("tok-")
    assert manager.fetch_count == 1


# -- failures ---------------------------------------------------------------------------------------
def test_fetch_error_is_a_token_error_without_the_secret(store: Store) -> None:
    calls: list[int] = []
    broken = threading.Event()
    broken.set()

    def fetch() -> tuple[str, int]:
        calls.append(1)
        time.sleep(0.05)
        if broken.is_set():
            exc = RuntimeError(
                f"GET https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential"
                f"&appid=wx1&secret={SECRET}: 40125 invalid appsecret, body {{\"secret\": \"{SECRET}\"}}"
            )
            exc.errcode = 40125  # type: ignore[attr-defined]
            raise exc
        return "tok-ok", 7200

    manager = AccessTokenManager(store, fetch)
    errors = race_threads(5, manager.get)
    assert all(isinstance(e, TokenError) for e in errors), errors
    assert len(calls) == 1  # callers queued behind the failed fetch share its error
    error = errors[0]
    assert isinstance(error, TokenError)
    assert SECRET not in str(error) and "40125 invalid appsecret" in str(error)
    assert error.errcode == 40125
    assert all(e.__cause__ is None and e.__context__ is None for e in errors)  # nothing chained may quote it
    broken.clear()
    assert manager.get() == "tok-ok"  # the lock was released and the failure is not sticky


@pytest.mark.parametrize("answer", [("", 7200), ("tok", 0), (None, 7200)])
def test_invalid_fetch_answer(store: Store, answer: tuple[object, object]) -> None:
    manager = AccessTokenManager(store, lambda: answer)  # type: ignore[arg-type, return-value]
    with pytest.raises(TokenError, match="invalid answer"):
        manager.get()


def test_times_out_when_another_worker_holds_the_lock(store: Store) -> None:
    manager = AccessTokenManager(store, counting_fetch(store), wait_timeout_s=0.1)
    store.add(manager.lock_key, "someone-else", ttl=30)
    started = time.monotonic()
    with pytest.raises(TokenError, match="timed out"):
        manager.get()
    assert 0.1 <= time.monotonic() - started < 1.0
    assert manager.fetch_count == 0


# -- a store that fails: the token is still used in this process (issue 19, item 7) ------------------------
@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis of this test's own on a free port (the shared one is not ours to fill up or stop)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    import redis
    client = redis.Redis(port=port)
    try:
        for _ in range(200):
            try:
                client.config_set("requirepass", "hunter2")
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        yield url, proc
    finally:
        client.close()
        proc.terminate()
        proc.wait(5)


def counted(tokens: list[str]) -> Callable[[], tuple[str, float]]:
    """A fetch that counts in this process (the store is the thing failing)."""
    def fetch() -> tuple[str, float]:
        tokens.append(f"tok-{uuid.uuid4().hex[:8]}")
        return tokens[-1], 7200
    return fetch


def test_a_full_store_still_gives_the_fresh_token(private_redis: tuple[str, Any],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Redis out of memory (maxmemory reached, no eviction): reads work, every write fails, as on a full disk."""
    url, _ = private_redis
    import redis
    admin = redis.Redis.from_url(url)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    store, fetched = open_store(url), []
    with pytest.raises(StoreError, match="used memory > 'maxmemory'"):
        store.set("probe", "x")
    manager = AccessTokenManager(store, counted(fetched))
    assert manager.get() == fetched[0]
    assert [manager.get() for _ in range(5)] == [fetched[0]] * 5 and len(fetched) == 1  # kept in memory
    assert manager.refresh(fetched[0]) == fetched[1]  # WeChat rejected it: one new fetch, still in memory
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all("hunter2" not in w for w in warnings)
    assert len(warnings) == 2 and all("fetching a token for this process" in w for w in warnings), warnings
    admin.close()


def test_a_store_that_went_down_still_gives_a_token_and_voice_keeps_working(
        private_redis: tuple[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    url, proc = private_redis
    store, fetched = open_store(url), []
    proc.terminate()
    proc.wait(5)
    with pytest.raises(StoreError, match="unreachable"):
        store.get("probe")
    manager = AccessTokenManager(store, counted(fetched))
    assert manager.get() == fetched[0] and manager.get() == fetched[0] and len(fetched) == 1
    assert any("fetching a token for this process" in r.getMessage() for r in caplog.records)
    assert all("hunter2" not in r.getMessage() for r in caplog.records)
    # the real client against the sandbox: WeChat's voice API works with the store down
    with Sandbox(appid="wxtokenstoredown", appsecret="s3cr3t-down", recognition_latency_s=0.0) as sandbox:
        config = WeChatConfig(appid="wxtokenstoredown", appsecret="s3cr3t-down", token="t", api_base_url=sandbox.url)
        api = WeChatAPI(config, store)
        clip = sandbox.register_voice("打开客厅的灯", duration_s=1.0)
        api.voice.add("vid-store-down", transcode_to_mp3(sandbox.media_data(clip["media_id"])[0]).data)  # type: ignore[index]
        assert api.voice.result("vid-store-down").text == "打开客厅的灯"
        assert [c["api"] for c in sandbox.calls()].count("stable_token") == 1


# -- across processes -------------------------------------------------------------------------------
def _worker(url: str, prefix: str, start_at: float, stale: str | None) -> tuple[int, list[str]]:
    """In a spawned process: 5 threads call get() (or refresh(stale)) at once; their tokens."""
    with open_store(url, prefix=prefix) as store:
        manager = AccessTokenManager(store, counting_fetch(store))
        call = manager.get if stale is None else lambda: manager.refresh(stale)
        wait_until(start_at)
        tokens = race_threads(5, call)
    return os.getpid(), [str(t) for t in tokens]


def _race_processes(pool: Pool, url: str, prefix: str, stale: str | None = None) -> set[str]:
    open_store(url, prefix=prefix).close()  # create the SQLite file before the race
    at = start_time()
    results = pool.starmap(_worker, [(url, prefix, at, stale)] * PROCESSES)
    assert len({pid for pid, _ in results}) >= 2  # really several processes (normally all 3)
    return {token for _, tokens in results for token in tokens}


def test_processes_share_one_fetch(shared_target: tuple[str, str], spawn_pool: Pool) -> None:  # noqa: F811
    url, prefix = shared_target
    tokens = _race_processes(spawn_pool, url, prefix)
    assert len(tokens) == 1 and next(iter(tokens)).startswith("tok-")
    with open_store(url, prefix=prefix) as store:
        assert fetches(store) == 1


def test_processes_refresh_once(shared_target: tuple[str, str], spawn_pool: Pool) -> None:  # noqa: F811
    url, prefix = shared_target
    with open_store(url, prefix=prefix) as store:
        stale = AccessTokenManager(store, counting_fetch(store, delay=0)).get()
        tokens = _race_processes(spawn_pool, url, prefix, stale=stale)
        assert len(tokens) == 1 and stale not in tokens
        assert fetches(store) == 2
