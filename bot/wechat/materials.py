"""Permanent voice material outlives its reply by a grace period, then is deleted — by whichever process's
sweeper finds it due, even after a restart.

Accounts that may not upload temporary media answer with permanent material (bot/wechat/media.py), and an
account holds at most 1000 such items (45074 beyond). A voice reply only names the material: WeChat fetches
the audio for the user's phone after it got the reply, and a phone that is offline fetches it later. So the
material is not deleted when the reply is sent, but ``[voice.reply] material_grace_s`` later (README, "Voice
replies"): each item is scheduled in the store (``material:<appid>:<media_id>``, listed in an index by when it
is due), and the release is claimed with one compare-and-delete, so one process deletes it. When the quota is
full, the oldest scheduled items are released at once to make room.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from bot.ops.clock import Clock
from bot.store import Store, StoreError
from bot.wechat.errors import InvalidMediaError, WeChatAPIError

log = logging.getLogger("bot.wechat")

KEEP_S = 7 * 86400.0  # a schedule outlives its due time this long (the sweeper may have been down)
RETRY_S = 300.0  # a deletion WeChat did not take (busy, network) is tried again this much later


class MaterialReleases:
    """The account's scheduled deletions of permanent voice material."""

    def __init__(self, client: Any, store: Store, clock: Clock, *, appid: str, grace_s: float) -> None:
        self.client, self.store, self.clock, self.grace_s = client, store, clock, grace_s
        self.appid = appid
        self.index = f"materials:{appid}"

    def _key(self, media_id: str) -> str:
        return f"material:{self.appid}:{media_id}"

    def schedule(self, media_ids: Iterable[str], *, now: bool = False) -> None:
        """Delete these items ``grace_s`` from now (``now``: at the next sweep: the user will never see them)."""
        due = self.clock.time() + (0.0 if now else self.grace_s)
        for media_id in media_ids:
            try:
                self.store.add(self._key(media_id), repr(due), ttl=self.grace_s + KEEP_S,
                               index=[(self.index, media_id, due)])  # an item scheduled twice keeps its first time
            except StoreError as exc:  # not scheduled: it stays until deleted by hand or the quota frees it
                log.warning("voice media: cannot schedule the deletion of material %s (%s)", media_id, exc)

    def release_due(self, limit: int = 20) -> int:
        """Delete the items whose grace period is over (the sweeper's tick); how many were deleted."""
        due = self.store.index_range(self.index, until=self.clock.time(), limit=limit)
        return sum(self._release(media_id, score) for media_id, score in due)

    def release_oldest(self, count: int = 10) -> int:
        """The quota is full: delete the ``count`` oldest scheduled items now, due or not."""
        oldest = self.store.index_range(self.index, limit=count)
        released = sum(self._release(media_id, score) for media_id, score in oldest)
        log.warning("voice media: the account's permanent material is full (45074, 1000 items): released the %d "
                    "oldest item(s) before their %gs grace period ended ([voice.reply] material_grace_s)",
                    released, self.grace_s)
        return released

    def pending(self) -> int:
        return len(self.store.index_range(self.index, limit=1000))

    def _release(self, media_id: str, score: float) -> bool:
        key = self._key(media_id)
        value = self.store.get(key)
        self.store.index_discard(self.index, media_id, score)
        if value is None or not self.store.compare_and_delete(key, value):
            return False  # another process released it
        try:
            self.client.media.delete_material(media_id)
        except InvalidMediaError:
            log.info("voice media: material %s was already gone", media_id)
            return False
        except WeChatAPIError as exc:
            log.warning("voice media: cannot delete material %s (%s); trying again in %gs", media_id, exc, RETRY_S)
            retry = self.clock.time() + RETRY_S
            self.store.add(key, repr(retry), ttl=self.grace_s + KEEP_S, index=[(self.index, media_id, retry)])
            return False
        return True
