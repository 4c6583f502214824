"""``ctx.session_merge``: a change that lost the session's compare-and-set is redone on the newer session, on
every store backend (Redis: db 12, a prefix of its own); without a merge function the first change still wins.
And ``router.check``: the generic hook ``python -m bot check`` collects."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_CONFIG
from redis_support import drop_prefix, unique_prefix

from bot.config import config_from_dict
from bot.core.router import Router, combine
from bot.core.session import Sessions
from bot.store import StoreError, open_store
from bot.store.base import Store

REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "redis":
        prefix = unique_prefix("merge")
        try:
            opened = open_store(REDIS_URL, prefix=prefix)
            opened.ping()
        except StoreError as exc:
            pytest.skip(f"Redis not available: {exc}")
        yield opened
        opened.close()
        drop_prefix(REDIS_URL, prefix)
        return
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"
    with open_store(url, prefix="wvbmerge:") as opened:
        yield opened


def append(item: str) -> Any:
    return lambda session: session.setdefault("items", []).append(item)


def test_the_change_that_lost_is_redone_on_the_newer_session(store: Store) -> None:
    sessions = Sessions(store, ttl_s=60)
    first, snap_first = sessions.load("u1")
    second, snap_second = sessions.load("u1")  # both read the same (empty) session
    append("a")(first)
    append("b")(second)
    assert sessions.save("u1", first, snap_first, "m1", merge=append("a"))
    assert sessions.save("u1", second, snap_second, "m2", merge=append("b"))  # lost the CAS, merged
    assert sessions.load("u1")[0] == {"items": ["a", "b"]}


def test_without_a_merge_the_first_change_wins(store: Store) -> None:
    sessions = Sessions(store, ttl_s=60)
    first, snap_first = sessions.load("u2")
    second, snap_second = sessions.load("u2")
    first["x"], second["x"] = 1, 2
    assert sessions.save("u2", first, snap_first, "m1")
    assert not sessions.save("u2", second, snap_second, "m2")
    assert sessions.load("u2")[0] == {"x": 1}


def test_a_merge_that_raises_costs_its_change_only(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    sessions = Sessions(store, ttl_s=60)
    first, snap_first = sessions.load("u3")
    second, snap_second = sessions.load("u3")
    first["x"], second["y"] = 1, 2

    def broken(session: dict[str, Any]) -> None:
        raise RuntimeError("bug")

    assert sessions.save("u3", first, snap_first, "m1")
    assert not sessions.save("u3", second, snap_second, "m2", merge=broken)
    assert sessions.load("u3")[0] == {"x": 1} and "merge function raised" in caplog.text


# -- router.check ----------------------------------------------------------------------------------------
def test_router_checks_run_once_each_and_a_raising_check_is_a_failed_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import check as check_cli
    inner, outer = Router("inner"), Router("outer")
    calls: list[str] = []

    @inner.check
    def ready(config: Any) -> list[tuple[bool, str, str]]:
        calls.append("ready")
        return [(True, "inner service", f"ok for {config.wechat.appid}")]

    @outer.check
    def broken(config: Any) -> list[tuple[bool, str, str]]:
        raise RuntimeError("cannot tell")

    outer.include(inner)
    both = combine([outer])
    monkeypatch.setattr("bot.core.loading.load_router", lambda spec, where="": both)
    config = config_from_dict({**BASE_CONFIG, "handlers": {"routers": ["a:router", "b:router"]}})
    results = check_cli.check_routers(config)
    assert [(r.ok, r.name) for r in results] == [
        (True, "router a:router"), (False, "router a:router check broken"), (True, "inner service"),
        (True, "router b:router")]  # the same check functions under the second spec are not run again
    assert calls == ["ready"] and results[2].detail == f"ok for {config.wechat.appid}"
    assert "RuntimeError: cannot tell" in results[1].detail
