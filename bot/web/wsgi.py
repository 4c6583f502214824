"""WSGI entry point for gunicorn: ``gunicorn -c gunicorn.conf.py 'bot.wsgi:app'``.

The config file comes from ``WECHAT_VOICEBOT_CONFIG`` (default ``config.toml``); ``gunicorn.conf.py`` checks it
in the master before forking (bot/web/preflight.py).
"""
from bot.ops.logs import setup_logging
from bot.web.app import create_app
from bot.web.preflight import worker_config

config = worker_config()
setup_logging(config)
app = create_app(config)
