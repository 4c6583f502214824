"""One access token for every thread and process: fetched once, refreshed once, never leaked.

Fetches are counted in the store itself (``fetches``), so a count is exact even when the fetching
happens in other processes.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.pool import Pool

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

from bot.store import Store, open_store
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


def test_unreachable_store_is_a_token_error() -> None:
    manager = AccessTokenManager(open_store("redis://:hunter2@127.0.0.1:1/0"), lambda: ("t", 7200))
    with pytest.raises(TokenError, match="store") as info:
        manager.get()
    assert "hunter2" not in str(info.value)


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
