"""Diagnostic only (``benchmarks/webhook.py --with-direct``): our app with the delivery layer bypassed.

The same config and router as ``bot.wsgi``, but a webhook built without a delivery: each message is
routed and answered in the request thread, without dedupe, the job executor or the store. Comparing it with
the normal server isolates what delivery costs per message from what the envelope and router cost.
"""
import os

from bot.config import load_config
from bot.core.webhook import Webhook
from bot.ops.logs import setup_logging
from bot.runtime import build_pipeline, build_services
from bot.web.app import create_app

config = load_config(os.environ.get("WECHAT_VOICEBOT_CONFIG", "config.toml"))
setup_logging(config)
app = create_app(config, webhook=Webhook(config, pipeline=build_pipeline(config, services=build_services(config))))
