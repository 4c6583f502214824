"""Wiring: build the core webhook and the services the config asks for."""
from __future__ import annotations

from typing import Any

from .config import Config
from .router import Router
from .webhook import Webhook


def build_webhook(config: Config, router: Router | None = None, **kwargs: Any) -> Webhook:
    return Webhook(config, router, **kwargs)
