"""Where a message's delivery ends: its one ``bot.message`` line, and the voice material it no longer needs.

A voice answer uploaded as permanent material (accounts that may not upload temporary media) counts against
the account's 1000-item quota until deleted, so it is deleted once the answer is delivered — or expired.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from bot.ops.trace import Trace, emit
from bot.store import Store
from bot.wechat.media import VoiceUploader

log = logging.getLogger("bot.delivery")


class Outcomes:
    def __init__(self, client: Any, store: Store, appid: str) -> None:
        self.client, self.store, self.appid = client, store, appid

    def done(self, trace: Trace, path: str, **fields: Any) -> None:
        """Log the message's line (``emit``) and release its permanent voice material, off this thread."""
        materials = trace.get("materials")
        if materials:
            trace = {k: v for k, v in trace.items() if k != "materials"}
        emit(trace, path, **fields)
        if materials and self.client is not None:
            threading.Thread(target=self._release, args=(list(materials),), name="wvb-material", daemon=True).start()

    def _release(self, materials: list[str]) -> None:
        uploader = VoiceUploader(self.client, self.store, appid=self.appid)
        for media_id in materials:
            uploader.release(media_id)
