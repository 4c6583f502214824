"""Services that talk to WeChat: the API client, its voice and media groups (``media``: voice media for replies
and ``VoiceUploader``), the shared access token, errors."""
from bot.wechat.client import WeChatAPI
from bot.wechat.errors import WeChatAPIError

__all__ = ["WeChatAPI", "WeChatAPIError"]
