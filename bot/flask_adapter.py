"""Flask adapter: an app factory, a blueprint and an ``init_app`` extension over the core.

It only turns a Flask request into ``(method, query, body)`` and the core's answer back into a response.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, request

from .config import Config, load_config
from .envelope import EnvelopeError
from .router import Router
from .webhook import Webhook

ConfigLike = str | os.PathLike[str] | Config


def as_config(config: ConfigLike) -> Config:
    return config if isinstance(config, Config) else load_config(Path(config))


def build_webhook(config: ConfigLike, router: Router | None = None, **kwargs: Any) -> Webhook:
    """A core webhook with the services the config asks for (voice pipeline, delivery, store)."""
    from .runtime import build_webhook as build
    return build(as_config(config), router=router, **kwargs)


def webhook_blueprint(webhook: Webhook, name: str = "wechat_voicebot") -> Blueprint:
    """A blueprint serving the callback at ``[server] path`` (mount it with any ``url_prefix``)."""
    bp = Blueprint(name, __name__)
    limit = webhook.config.server.max_body_bytes

    def callback() -> Response:
        if request.content_length is not None and request.content_length > limit:
            refused = webhook.reject(EnvelopeError(413, "body too large",
                                                   f"Content-Length {request.content_length} > {limit} bytes"))
            return Response(refused.body, status=refused.status, content_type=refused.content_type)
        body = request.stream.read(limit + 1) if request.method == "POST" else b""
        result = webhook.handle(request.method, request.args, body)
        return Response(result.body, status=result.status, content_type=result.content_type)

    bp.add_url_rule(webhook.config.server.path, "callback", callback, methods=["GET", "POST"])
    return bp


class VoiceBot:
    """Flask extension: ``VoiceBot(app, config)`` or ``bot = VoiceBot(); bot.init_app(app)``.

    ``init_app`` reads ``app.config["WECHAT_VOICEBOT_CONFIG"]`` (a path or Config) when no config is given.
    """

    def __init__(self, app: Flask | None = None, config: ConfigLike | None = None, router: Router | None = None) -> None:
        self.config = config
        self.router = router
        self.webhook: Webhook | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, config: ConfigLike | None = None) -> Webhook:
        config = config or self.config or app.config.get("WECHAT_VOICEBOT_CONFIG")
        if config is None:
            raise RuntimeError("VoiceBot.init_app: pass config= or set app.config['WECHAT_VOICEBOT_CONFIG']")
        self.webhook = build_webhook(config, self.router)
        app.register_blueprint(webhook_blueprint(self.webhook))
        app.extensions["wechat_voicebot"] = self.webhook
        return self.webhook


def create_app(config: ConfigLike, router: Router | None = None, **kwargs: Any) -> Flask:
    """The whole bot as a Flask app: the callback at ``[server] path`` and ``GET /healthz``."""
    app = Flask("wechat_voicebot")
    webhook = build_webhook(config, router, **kwargs)
    app.register_blueprint(webhook_blueprint(webhook))
    app.extensions["wechat_voicebot"] = webhook

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
