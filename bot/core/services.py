"""What one bot process shares between requests: the store and the WeChat API client.

Built once by the wiring (``bot.runtime.build_services``) and handed to the pipeline, delivery, sessions and
handlers (``ctx.services``), so all of them see the same store and the same access token.
"""
from __future__ import annotations

from dataclasses import dataclass

from bot.store.base import Store
from bot.wechat.client import WeChatAPI
from bot.wechat.wecom import WeComAPI


@dataclass
class Services:
    """The long-lived services of one bot."""

    store: Store
    client: WeChatAPI | WeComAPI  # an Official Account's, or a WeCom app's (bot/wechat/wecom.py)
