"""One upload per image: the same bytes (by SHA-256) reuse their media_id while it lasts.

Replicas agree through the store: a record per hash, and a lock per hash while one of them
uploads, so simultaneous requests for the same new image cause one WeChat upload; the others
wait for its record. A lock holder that dies only delays them until the lock's TTL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import structlog

from libs.common.store import Store
from services.media import records
from services.media.intake import Intake
from services.media.records import LIFETIME_S, MediaRecord
from services.media.upstream import WeChatMedia

log = structlog.get_logger(__name__)

_LOCK_SLACK_S = 10.0


class Uploader(msgspec.Struct, frozen=True, kw_only=True):
    """What an upload needs: the store, WeChat, a clock (WeChat's time) and the reuse margin."""

    store: Store
    wechat: WeChatMedia
    clock: Callable[[], float]
    margin_s: float

    @property
    def lock_ttl_s(self) -> float:
        # Outlives one upload with all its retries, so a live holder never loses the lock.
        return self.wechat.deadline_s + _LOCK_SLACK_S


async def obtain(
    up: Uploader, sha256: str, load: Callable[[], Awaitable[Intake]]
) -> tuple[MediaRecord, bool]:
    """A media_id for the bytes hashed ``sha256``: ``(record, reused)``.

    ``load`` opens the bytes; it is called only when an upload is needed.
    """
    found = await records.reusable(up.store, sha256, now=up.clock(), margin_s=up.margin_s)
    if found is not None:
        return found, True
    owner = uuid.uuid4().hex
    lock = records.lock_key(sha256)
    locked = await _lock_or_wait(up, lock, owner, sha256)
    try:
        # Another replica may have finished between our first read and now.
        found = await records.reusable(up.store, sha256, now=up.clock(), margin_s=up.margin_s)
        if found is not None:
            return found, True
        with await load() as intake:
            uploaded = await up.wechat.upload(intake)
            now = up.clock()
            created = float(uploaded.created_at) if uploaded.created_at > 0 else now
            record = MediaRecord(
                media_id=uploaded.media_id,
                created_at=created,
                expires_at=created + LIFETIME_S,
                sha256=intake.sha256,
                size=intake.size,
                content_type=intake.kind.mime,
            )
        await records.remember(up.store, record, now=now)
        log.info("media.uploaded", sha256=sha256[:16], size=record.size)
        return record, False
    finally:
        if locked:
            await up.store.release_lock(lock, owner)


async def _lock_or_wait(up: Uploader, lock: str, owner: str, sha256: str) -> bool:
    """True with the lock held; False when another upload finished (or never did in time)."""
    deadline = time.monotonic() + up.lock_ttl_s
    pause = 0.05
    while True:
        if await up.store.acquire_lock(lock, owner, ttl_s=up.lock_ttl_s):
            return True
        if await records.reusable(up.store, sha256, now=up.clock(), margin_s=up.margin_s):
            return False
        if time.monotonic() + pause > deadline:
            # The holder is stuck: a second upload is better than failing the request.
            log.warning("media.upload_lock_timeout", sha256=sha256[:16])
            return False
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)
