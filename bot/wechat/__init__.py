"""Services that talk to WeChat: the API client, its voice group, the shared access token, errors."""
from bot.wechat.client import WeChatAPI
from bot.wechat.errors import WeChatAPIError

__all__ = ["WeChatAPI", "WeChatAPIError"]
