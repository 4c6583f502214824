"""Diagnostic only (``benchmarks/webhook.py --with-direct``): our app with the delivery layer bypassed.

The same ``bot.wsgi`` app, config and router, but ``webhook.deliver = webhook.answer``: each message is
routed and answered in the request thread, without dedupe, the job executor or the store. Comparing it with
the normal server isolates what delivery costs per message from what the envelope and router cost.
"""
from bot.wsgi import app

webhook = app.extensions["wechat_voicebot"]
webhook.deliver = webhook.answer
