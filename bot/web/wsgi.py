"""WSGI entry point for gunicorn: ``gunicorn -c python:bot.web.gunicorn_conf`` (its app is ``bot.wsgi:app``).

The config file comes from ``WECHAT_VOICEBOT_CONFIG`` (default ``config.toml``); the gunicorn settings check it in
the master before forking (bot/web/preflight.py), and each worker again: a mistake is one line, never a traceback.
"""
from bot.web.preflight import worker_app

app = worker_app()
