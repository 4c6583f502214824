"""Shared state behind one small interface; the backend is chosen by a URL in the config.

``memory://`` (one process), ``sqlite:///path.db`` (several processes on one machine, the default;
``sqlite://:memory:`` for throwaway runs),
``redis://host:port/db`` / ``rediss://`` (several machines). Tests swap backends by changing the URL.
"""
from __future__ import annotations

from bot.store.base import Store, StoreError, redact_url

__all__ = ["Store", "StoreError", "check_url", "open_store"]

SUPPORTED = "memory://, sqlite:///relative/path.db (or sqlite:////absolute/path.db), redis://host:port/db"


def check_url(url: str) -> str:
    """The scheme of a URL :func:`open_store` can open, or ``ValueError`` (one line) saying why not — without
    opening anything, so that every entry point refuses such a URL at start-up, ``check`` included."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in ("memory", "sqlite", "redis", "rediss"):
        raise ValueError(f"unsupported store URL scheme {scheme or '(none)'!r} in {redact_url(url)!r}; "
                         f"use one of: {SUPPORTED}")
    if scheme == "sqlite":
        from bot.store.sqlite import path_from_url

        path_from_url(url)
    return scheme


def open_store(url: str, *, prefix: str = "wvb:") -> Store:
    """Open the store a URL names; ``prefix`` namespaces every key (one prefix per bot or test)."""
    scheme = check_url(url)
    if scheme == "memory":
        from bot.store.memory import MemoryStore

        return MemoryStore(prefix)
    if scheme == "sqlite":
        from bot.store.sqlite import SQLiteStore, path_from_url

        return SQLiteStore(path_from_url(url), prefix)
    from bot.store.redis import RedisStore

    return RedisStore(url, prefix)
