"""wechat-voicebot: WeChat Official Account webhooks that understand voice.

Public API: :class:`Router` (write handlers), :class:`Context` (what handlers get), :func:`create_app`
(a Flask app), :class:`VoiceBot` (mount into an existing Flask app), :func:`load_config`.
"""
from .config import Config, ConfigError, load_config
from .context import Context
from .flask_adapter import VoiceBot, create_app, webhook_blueprint
from .router import Router
from .webhook import Response, Webhook

__all__ = ["Config", "ConfigError", "Context", "Response", "Router", "VoiceBot", "Webhook", "create_app",
           "load_config", "webhook_blueprint"]
__version__ = "0.1.0"
