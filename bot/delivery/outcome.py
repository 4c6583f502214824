"""Where a message's delivery ends: its one ``bot.message`` line, and the voice material it no longer needs.

A voice answer uploaded as permanent material (accounts that may not upload temporary media) counts against
the account's 1000-item quota until deleted; it is scheduled for deletion once the answer was delivered, a
grace period later (bot/wechat/materials.py), or at once when it expired unseen.
"""
from __future__ import annotations

from typing import Any

from bot.core.answer import Answer, Voice
from bot.ops.trace import Trace, emit
from bot.wechat.materials import MaterialReleases


class Outcomes:
    def __init__(self, releases: MaterialReleases | None) -> None:
        self.releases = releases

    def done(self, trace: Trace, path: str, *, answer: Answer | None = None, **fields: Any) -> None:
        """Log the message's line (``emit``) and schedule the release of its permanent voice material."""
        emit(trace, path, **fields)
        materials = [p.media_id for p in answer.parts if isinstance(p, Voice) and p.permanent] if answer else []
        if materials and self.releases is not None:
            self.releases.schedule(materials, now=path in ("expired", "undeliverable"))
