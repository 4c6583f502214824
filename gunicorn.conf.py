"""gunicorn settings for wechat-voicebot in this checkout: ``gunicorn -c gunicorn.conf.py`` (gunicorn also reads this
file by itself when started here without ``-c``).

The settings ship with the package (bot/web/gunicorn_conf.py: threads, workers, the config checked in the
master), so that ``gunicorn -c python:bot.web.gunicorn_conf`` deploys the same bot from a project of one's own
after ``pip install``; this file is those settings.
"""
from bot.web.gunicorn_conf import *  # noqa: F403 - every setting, and the config checked before workers start
