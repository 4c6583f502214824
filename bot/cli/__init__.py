"""The command line, ``python -m bot``: ``commands`` (serve, run, simulate, sandbox, worker) and ``check``
(is this deployment ready?).

An adapter: may import everything below it (wiring, delivery, core, services, ops, config), the other
adapters (``bot.web``, ``bot.testing``) and the sandbox.
"""
from bot.cli.commands import main

__all__ = ["main"]
