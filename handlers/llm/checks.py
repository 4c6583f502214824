"""``python -m bot check`` for handlers.llm: does the chat service answer, and does it have the model?

Two lines. ``llm service``: a one-token chat request with the configured key and model (the only proof that
the three fit together). ``llm model``: whether ``GET /v1/models`` lists the model — services that list none
(or have no such endpoint) are not held against it. Each failure says what to fix; the key is never printed
(the check output is redacted too).
"""
from __future__ import annotations

import time
from typing import Any

from bot.config import Config
from handlers.llm.config import LLMConfig
from handlers.llm.service import client, failure

CHECK_TIMEOUT_S = 10.0
FIXES = {
    "auth": "the key was refused: check [llm] api_key (or VOICEBOT_LLM_API_KEY)",
    "not_found": "check [llm] url (the base URL, usually ending in /v1) and [llm] model",
    "rate_limited": "the service refuses for now (429): check the account's quota or balance",
    "server": "the service failed: try again later",
    "timeout": "no answer in time: check [llm] url and the network, or raise [llm] timeout_s",
    "connection": "cannot reach it: check [llm] url and the outbound network or proxy",
    "other": "see the reason; [llm] extra may hold a field the service refuses",
}

Line = tuple[bool, str, str]


def check_llm(config: Config) -> list[Line]:
    """The readiness lines of handlers.llm (registered as ``router.check``)."""
    cfg = config.llm
    service, model = f"llm service ({cfg.url or 'no url'})", f"llm model ({cfg.model or 'none'})"
    if not cfg.url or not cfg.model:
        return [(False, service, "[llm] url and model are required by handlers.llm")]
    api = client(cfg, timeout_s=min(cfg.timeout_s, CHECK_TIMEOUT_S))
    started = time.monotonic()
    try:
        api.chat.completions.create(model=cfg.model, messages=[{"role": "user", "content": "ping"}], max_tokens=1,
                                    stream=False)
    except Exception as exc:  # any failure of the library or its transport is a line, not a crash
        failed = failure(exc, cfg)
        lines: list[Line] = [(False, service, f"{failed.reason} ({failed.kind}): {FIXES[failed.kind]}")]
        if failed.kind == "not_found":
            lines.append(listed(api, cfg, model))
        return lines
    ms = (time.monotonic() - started) * 1000
    return [(True, service, f"answers with {cfg.model} ({ms:.0f} ms)"), listed(api, cfg, model)]


def listed(api: Any, cfg: LLMConfig, name: str) -> Line:
    """Is ``[llm] model`` among the models the service lists? Not listing any is no failure."""
    wanted = cfg.model
    try:
        ids = [m.id for m in api.models.list()]
    except Exception as exc:  # no /v1/models (404), or it is refused: the model cannot be checked this way
        reason = failure(exc, cfg).reason
        return True, name, f"not checked: the service lists no models ({reason})"
    if wanted in ids:
        return True, name, f"listed by the service ({len(ids)} models)"
    shown = ", ".join(ids[:8]) + (", …" if len(ids) > 8 else "")
    return False, name, f"not among the {len(ids)} models the service lists ({shown}): check [llm] model"
