from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from libs.common.store import Store
from libs.common.store.memory import MemoryStore
from services.media import records
from services.media.records import MediaRecord

NOW = 1_800_000_000.0


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    url = f"memory://media-records-{uuid.uuid4().hex}"
    yield MemoryStore.shared(url, prefix="t:")
    MemoryStore.forget(url)


def record(media_id: str = "m1", *, created_at: float = NOW) -> MediaRecord:
    return MediaRecord(
        media_id=media_id,
        created_at=created_at,
        expires_at=created_at + records.LIFETIME_S,
        sha256="ab" * 32,
        size=10,
        content_type="image/png",
    )


async def test_a_record_is_reusable_until_the_margin(store: Store) -> None:
    await records.remember(store, record(), now=NOW)
    margin = 3600.0
    assert await records.reusable(store, "ab" * 32, now=NOW, margin_s=margin) == record()
    end = NOW + records.LIFETIME_S
    assert await records.reusable(store, "ab" * 32, now=end - margin - 1, margin_s=margin)
    assert await records.reusable(store, "ab" * 32, now=end - margin, margin_s=margin) is None


async def test_the_record_by_id_outlives_the_media(store: Store) -> None:
    await records.remember(store, record(), now=NOW)
    assert await records.by_id(store, "m1") == record()
    assert await records.by_id(store, "other") is None


async def test_a_refused_id_is_forgotten_only_while_it_is_current(store: Store) -> None:
    await records.remember(store, record("m1"), now=NOW)
    assert not await records.forget_refused(store, "ab" * 32, "some-older-id")
    assert await records.reusable(store, "ab" * 32, now=NOW, margin_s=0)
    assert await records.forget_refused(store, "ab" * 32, "m1")
    assert await records.reusable(store, "ab" * 32, now=NOW, margin_s=0) is None
    assert not await records.forget_refused(store, "ab" * 32, "m1")


async def test_an_unreadable_record_counts_as_absent(store: Store) -> None:
    await store.set(records.sha_key("cd" * 32), b"{not json", ttl_s=60)
    assert await records.reusable(store, "cd" * 32, now=NOW, margin_s=0) is None


def test_a_record_is_expired_from_its_expiry_on() -> None:
    record = MediaRecord(
        media_id="m", created_at=0.0, expires_at=100.0, sha256="s", size=1, content_type="x"
    )
    assert not record.expired(99.9)
    assert record.expired(100.0)
