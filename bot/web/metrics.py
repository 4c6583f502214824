"""``GET [metrics] path``: the Prometheus endpoint as a Flask view (counting itself lives in bot/ops/metrics.py)."""
from __future__ import annotations

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST

from bot.config import Config
from bot.ops.metrics import authorized, exposition


def register_metrics(app: Flask, config: Config) -> None:
    """Serve ``[metrics] path`` when enabled; disabled, the path does not exist (404)."""
    if not config.metrics.enabled:
        return

    def metrics_view() -> Response:
        if not authorized(config, request.headers.get("Authorization")):
            return Response("unauthorized\n", status=401, content_type="text/plain; charset=utf-8",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return Response(exposition(), content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule(config.metrics.path, "metrics", metrics_view, methods=["GET"])
