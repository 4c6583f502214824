"""Delivery: exactly one answer per message across WeChat's 5-second deadline, its retries and dying workers.

``states`` (the table of states and moves: the only writer of records) · ``record`` (a message's record) ·
``tries`` (what one request answers) · ``jobs`` (who runs a message's job) · ``answer`` (a try's passive reply)
· ``late`` and ``customer_service`` (answers no try can carry) · ``pickup`` (kept for the user's next message)
· ``sweeper`` (records no request will come for) · ``leases`` (the heartbeat) · ``background`` (the threads) ·
``executors`` (threads, RQ) · ``engine`` (the ``Delivery`` the webhook calls). Time comes from the injected
clock (``bot.ops.clock``) only.

May import: ``bot.core``, ``bot.voice``, ``bot.wechat``, ``bot.store``, ``bot.ops``, ``bot.config``. Not the
wiring (``bot.runtime``, ``bot.worker``) nor the adapters (``bot.web``, ``bot.cli``, ``bot.testing``).
"""
