"""``[forward]``: the section ``handlers.forward`` declares (entry point ``wechat_voicebot.config``: ``forward``), its
schema and the rules that refuse it, next to the handler that reads it (``ctx.config.forward``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bot.config import Config, ConfigError, Section


@dataclass(frozen=True)
class ForwardConfig:
    """The built-in ``handlers.forward:router``: POST each message to your own service (signed, JSON)."""

    url: str = ""
    secret: str = field(default="", repr=False)
    timeout_s: float = 3.0


def check_forward(forward: ForwardConfig, cfg: Config) -> None:
    """A timeout that can pass, and a url and secret once ``handlers.forward:router`` is listed."""
    if forward.timeout_s <= 0:
        raise ConfigError(f"[forward] timeout_s: expected a positive number of seconds, got {forward.timeout_s:g}")
    if any(spec.startswith("handlers.forward") for spec in cfg.handlers.routers):
        for key in ("url", "secret"):
            if not getattr(forward, key):
                raise ConfigError(f"[forward] {key}: required when [handlers] routers lists \"handlers.forward:router\"")
        if not forward.url.startswith(("http://", "https://")):
            raise ConfigError(f"[forward] url: expected an http:// or https:// URL, got {forward.url!r}")


SECTION = Section(ForwardConfig, check_forward, env={"VOICEBOT_FORWARD_SECRET": "secret"})
