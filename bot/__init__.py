"""wechat-voicebot: WeChat Official Account webhooks that understand voice.

Public API: :class:`Router` (write handlers), :class:`Context` (what handlers get), :func:`create_app`
(a Flask app), :class:`VoiceBot` (mount into an existing Flask app), :func:`load_config`.
"""
from bot.config import Config, ConfigError, load_config
from bot.core.context import Context
from bot.core.router import Router
from bot.core.webhook import Response, Webhook
from bot.web.app import VoiceBot, create_app, webhook_blueprint

__all__ = ["Config", "ConfigError", "Context", "Response", "Router", "VoiceBot", "Webhook", "create_app",
           "load_config", "webhook_blueprint"]
__version__ = "0.1.0"
