"""WSGI entry point for gunicorn: ``gunicorn -c gunicorn.conf.py 'bot.wsgi:app'``.

The config file comes from ``WECHAT_VOICEBOT_CONFIG`` (default ``config.toml``).
"""
import os

from bot.ops.logs import setup_logging
from bot.config import load_config
from bot.web.app import create_app

config = load_config(os.environ.get("WECHAT_VOICEBOT_CONFIG", "config.toml"))
setup_logging(config)
app = create_app(config)
