"""Delivery: exactly one answer per message across WeChat's 5-second deadline, its retries and dying workers.

``engine`` (claim, wait, hold, answer each try) · ``record`` (the per-message state in the store) ·
``leases`` (the per-process heartbeat that says an owner is alive) · ``executors`` (threads, RQ) ·
``customer_service`` (late answers through ``message/custom/send``).

May import: ``bot.core``, ``bot.voice``, ``bot.wechat``, ``bot.store``, ``bot.ops``, ``bot.config``. Not the
wiring (``bot.runtime``, ``bot.worker``) nor the adapters (``bot.web``, ``bot.cli``, ``bot.testing``).
"""
