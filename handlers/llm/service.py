"""The chat service, through the official ``openai`` library: one client per configuration, a streamed answer
as text pieces, and every failure reduced to a kind the user gets an apology for.

The library does the protocol — request, auth header, server-sent events, errors by HTTP status — so any
OpenAI-compatible service works (OpenAI, DeepSeek, Qwen/DashScope, Moonshot, vLLM, Ollama). Its own retries
are off: an answer retried behind the user's back doubles the wait, and the delivery layer already carries a
late answer. ``timeout_s`` bounds each network wait (connect, the first byte, every chunk) and the answer as a
whole: a stream still going at ``timeout_s`` is cut there.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

try:
    import openai
except ImportError as exc:  # the extra is not installed: say which, at start-up (the router fails to load)
    from bot.config.extras import install_hint
    raise ImportError(f"handlers.llm needs the openai package, the llm extra: {install_hint('llm')}") from exc

from handlers.llm.config import LLMConfig

# Why an answer failed: each kind has its apology ([llm.apologies]) and is named in the log line.
KINDS = ("auth", "not_found", "rate_limited", "server", "timeout", "connection", "other")
MAX_REASON_CHARS = 200

_clients: dict[tuple[str, str, float], Any] = {}
_clients_lock = threading.Lock()


class LLMFailure(Exception):
    """The chat service gave no (complete) answer: ``kind`` picks the apology, ``reason`` goes to the log."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind, self.reason = kind, reason


def client(cfg: LLMConfig, timeout_s: float | None = None) -> Any:
    """The ``openai.OpenAI`` client for ``cfg`` (one per url, key and timeout in a process: it keeps connections)."""
    timeout = float(timeout_s if timeout_s is not None else cfg.timeout_s)
    key = (cfg.url, cfg.api_key, timeout)
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            # A service without keys (a local Ollama) still gets a placeholder: the library insists on one.
            found = _clients[key] = openai.OpenAI(base_url=cfg.url, api_key=cfg.api_key or "none",
                                                  timeout=timeout, max_retries=0)
        return found


def request_fields(cfg: LLMConfig) -> dict[str, Any]:
    """The request's options besides model and messages: temperature, max_tokens, and ``[llm] extra``."""
    fields: dict[str, Any] = {"temperature": cfg.temperature}
    if cfg.max_tokens:
        fields["max_tokens"] = cfg.max_tokens
    if cfg.extra:
        fields["extra_body"] = dict(cfg.extra)  # sent as body fields: provider options the library does not know
    return fields


def open_stream(cfg: LLMConfig, messages: list[dict[str, str]]) -> Any:
    """Start a streamed answer; the library's ``Stream`` of chunks, or :class:`LLMFailure` (nothing written yet)."""
    try:
        return client(cfg).chat.completions.create(model=cfg.model, messages=messages, stream=True,
                                                   **request_fields(cfg))
    except Exception as exc:  # the library's errors, and anything its transport raised
        raise failure(exc, cfg) from None


def pieces(stream: Any, cfg: LLMConfig, deadline: float) -> Iterator[str]:
    """The text of a streamed answer as it arrives; :class:`LLMFailure` when it breaks off or runs out of time.

    Always closes the stream (a consumer that stops early must not leave the connection half read)."""
    finished = None
    try:
        chunks = iter(stream)
        while True:
            if time.monotonic() > deadline:
                raise LLMFailure("timeout", f"the answer was not finished within {cfg.timeout_s:g}s")
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except Exception as exc:  # a read timeout, a dropped connection, an error event in the stream
                raise failure(exc, cfg) from None
            for choice in getattr(chunk, "choices", None) or ():
                finished = getattr(choice, "finish_reason", None) or finished
                content = getattr(getattr(choice, "delta", None), "content", None)
                if content:
                    yield content
        if finished is None:
            raise LLMFailure("connection", "the stream ended before the answer was finished (no finish_reason)")
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def failure(exc: BaseException, cfg: LLMConfig) -> LLMFailure:
    """What went wrong, as a kind and a short reason with the key taken out (whatever the service echoed)."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.APITimeoutError) or _is_timeout(exc):
        kind = "timeout"
    elif isinstance(exc, openai.APIConnectionError):
        kind = "connection"
    elif isinstance(exc, openai.APIStatusError):
        kind = {401: "auth", 403: "auth", 404: "not_found", 429: "rate_limited"}.get(
            status or 0, "server" if (status or 0) >= 500 else "other")
    elif isinstance(exc, openai.APIResponseValidationError):
        kind = "other"
    elif isinstance(exc, openai.APIError):  # an error event inside the stream
        kind = "server"
    elif isinstance(exc, openai.OpenAIError):
        kind = "other"
    else:  # the transport under the library, mid-stream (a connection reset, an incomplete chunked body)
        kind = "connection"
    message = " ".join(str(getattr(exc, "message", None) or exc).split())
    if cfg.api_key:
        message = message.replace(cfg.api_key, "***")
    reason = f"HTTP {status}" if status else type(exc).__name__
    if message and message != reason:
        reason += f": {message[:MAX_REASON_CHARS]}"
    return LLMFailure(kind, reason)


def _is_timeout(exc: BaseException) -> bool:
    """The library's transport (httpx) raises its own timeout classes mid-stream; they are named so."""
    return isinstance(exc, TimeoutError) or any("Timeout" in cls.__name__ for cls in type(exc).__mro__)
