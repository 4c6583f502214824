"""What the ``openai`` recognizer and the ``openai`` synthesizer share: the endpoint URL and one bounded POST.

Both talk to any OpenAI-compatible server (OpenAI itself, or a self-hosted one) the same way: a base URL with
or without ``/v1``, an optional bearer key, a timeout that never runs past the chain's deadline, and failures
turned into the chain's typed error so the next member gets its turn.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from bot.voice.chain import ChainError


def endpoint(url: str, path: str) -> str:
    """``http://h:9000``, ``http://h:9000/v1`` or the full URL → ``http://h:9000/v1/<path>``."""
    base = url.rstrip("/")
    if base.endswith("/" + path):
        return base
    return f"{base}/{path}" if base.endswith("/v1") else f"{base}/v1/{path}"


def post(session: requests.Session, url: str, *, api_key: str, timeout_s: float, deadline: float,
         error: type[ChainError], who: str, clock: Callable[[], float] = time.monotonic,
         **kwargs: Any) -> requests.Response:
    """POST within ``min(timeout_s, deadline - clock())``: the answer, whatever its status (see :func:`check`), or
    ``error`` ("timeout" / "unavailable") when there is none."""
    timeout = min(timeout_s, deadline - clock())
    if timeout <= 0:
        raise error("timeout", f"no time left for the {who}")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = session.post(url, headers=headers, timeout=timeout, **kwargs)
    except requests.Timeout:
        raise error("timeout", f"openai endpoint did not answer within {timeout:.1f}s") from None
    except requests.RequestException as exc:
        raise error("unavailable", f"openai endpoint: {type(exc).__name__}") from None
    return r


def check(r: requests.Response, error: type[ChainError]) -> requests.Response:
    """``r`` when it is a 200, else ``error("unavailable")``."""
    if r.status_code != 200:
        raise error("unavailable", f"openai endpoint answered HTTP {r.status_code}")
    return r
