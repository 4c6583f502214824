"""``gunicorn -c python:bot.web.gunicorn_conf`` serves ``bot.wsgi:app``: the name deployments use; the entry lives in
bot/web/wsgi.py."""
from bot.web.wsgi import app

__all__ = ["app"]
