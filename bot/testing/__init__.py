"""Testing kit: build any push, sign and encrypt it like WeChat, post it, read the reply.

In pytest (the plugin is registered automatically), a handler is tested in three lines::

    def test_lights(wechat_client):
        client = wechat_client(my_router)
        assert client.text("打开客厅的灯").content == "已打开客厅的灯"
"""
from bot.testing import messages
from bot.testing.client import BotClient, Envelope, Reply
from bot.testing.config import test_config
from bot.testing.wechat_retry import Seen, Sighting, WeChatRetryClient

__all__ = ["BotClient", "Envelope", "Reply", "Seen", "Sighting", "WeChatRetryClient", "messages", "test_config"]
