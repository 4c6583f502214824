"""Local stand-in for api.weixin.qq.com: ``Sandbox().start()`` in tests, ``python -m bot sandbox`` by hand."""
from bot.sandbox.server import Sandbox, main
from bot.sandbox.state import FREQUENCY_GRID, SandboxError

__all__ = ["Sandbox", "SandboxError", "FREQUENCY_GRID", "main"]
