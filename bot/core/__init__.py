"""The core: one message from the HTTP body to the reply XML, with no web framework and no delivery policy.

``envelope`` (verify, replay window, decrypt/encrypt, parse) · ``webhook`` (the ``(method, query, body)``
entry point) · ``pipeline`` (transcribe → route → render: a message's job) · ``context`` · ``router`` ·
``intents`` · ``normalize`` · ``session`` · ``loading`` (routers named in the config) · ``services`` (what
handlers share).

May import: ``bot.voice``, ``bot.wechat``, ``bot.store``, ``bot.ops``, ``bot.config``. Never Flask, and
never ``bot.delivery``, ``bot.web``, ``bot.cli`` or the wiring: delivery is handed to the webhook when it
is built.
"""
