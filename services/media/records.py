"""What the store remembers about uploaded media, shared by every replica.

``media:sha:<sha256>`` → the media_id WeChat gave those bytes, so the same image is not
uploaded again while it has enough validity left. ``media:id:<media_id>`` → the same record,
kept past its expiry, so a download of an id we uploaded can say "expired" rather than
"not found" (WeChat answers 40007 for both).
"""

from __future__ import annotations

import msgspec

from libs.common.store import Store

LIFETIME_S = 3 * 24 * 3600.0
"""How long WeChat keeps temporary media (WECHAT.md §9.1)."""
_REMEMBER_EXPIRED_S = 7 * 24 * 3600.0


class MediaRecord(msgspec.Struct, frozen=True, kw_only=True):
    media_id: str
    created_at: float
    """WeChat's ``created_at`` (unix seconds)."""
    expires_at: float
    sha256: str
    size: int
    content_type: str

    def valid_for(self, now: float) -> float:
        return self.expires_at - now

    def expired(self, now: float) -> bool:
        """Past WeChat's 3 days: WeChat answers 40007 for it, as for an id never issued."""
        return self.expires_at <= now


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(MediaRecord)


def sha_key(sha256: str) -> str:
    return f"media:sha:{sha256}"


def id_key(media_id: str) -> str:
    return f"media:id:{media_id}"


def lock_key(sha256: str) -> str:
    return f"media:upload-lock:{sha256}"


async def reusable(store: Store, sha256: str, *, now: float, margin_s: float) -> MediaRecord | None:
    """The record for these bytes if its media_id stays valid for more than ``margin_s``."""
    raw = await store.get(sha_key(sha256))
    if raw is None:
        return None
    record = _decode(raw)
    if record is None or record.valid_for(now) <= margin_s:
        return None
    return record


async def remember(store: Store, record: MediaRecord, *, now: float) -> None:
    body = _encoder.encode(record)
    left = record.valid_for(now)
    if left > 0:
        await store.set(sha_key(record.sha256), body, ttl_s=left)
    await store.set(id_key(record.media_id), body, ttl_s=max(left, 0.0) + _REMEMBER_EXPIRED_S)


async def by_id(store: Store, media_id: str) -> MediaRecord | None:
    raw = await store.get(id_key(media_id))
    return None if raw is None else _decode(raw)


async def forget_refused(store: Store, sha256: str, media_id: str) -> bool:
    """Drop the record for ``sha256`` only while it still names ``media_id`` (WeChat refused it).

    Several callers reporting the same refused id cause one new upload, not several.
    """
    raw = await store.get(sha_key(sha256))
    if raw is None:
        return False
    record = _decode(raw)
    if record is not None and record.media_id != media_id:
        return False
    return await store.delete_if_equals(sha_key(sha256), raw)


def _decode(raw: bytes) -> MediaRecord | None:
    # A record written by an incompatible version is treated as absent: upload again.
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        return None
