"""The web adapter: the Flask app factory, blueprint and ``VoiceBot.init_app`` (``app``), the ``/metrics``
view (``metrics``) and the WSGI entry for gunicorn (``wsgi``). Each turns an HTTP request into the core's
``(method, query, body)`` and its answer back into a response.

May import everything below it: the wiring (``bot.runtime``), ``bot.delivery``, ``bot.core``, services, ops
and config. Nothing imports it but ``bot`` (the public names) and the other adapters.
"""
