"""Services that talk to WeChat: the API client, its voice group, the shared access token, errors."""
from .client import WeChatAPI
from .errors import WeChatAPIError

__all__ = ["WeChatAPI", "WeChatAPIError"]
