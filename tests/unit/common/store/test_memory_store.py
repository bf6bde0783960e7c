"""What only the memory backend has: its clock, its sharing by URL, its housekeeping.

The behaviour it shares with Redis is tested for both in tests/integration/store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from libs.common.store import connect
from libs.common.store import memory as memory_module
from libs.common.store.memory import MemoryStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def url() -> Iterator[str]:
    url = f"memory://unit-{uuid.uuid4().hex}"
    yield url
    MemoryStore.forget(url)


async def test_ttl_follows_the_clock_exactly(store: MemoryStore, clock: FakeClock) -> None:
    await store.set("k", b"v", ttl_s=10)
    clock.now += 9.999
    assert await store.get("k") == b"v"
    clock.now += 0.001
    assert await store.get("k") is None


async def test_set_without_ttl_replaces_an_expiring_value(
    store: MemoryStore, clock: FakeClock
) -> None:
    await store.set("k", b"old", ttl_s=1)
    await store.set("k", b"new")
    clock.now += 10_000
    assert await store.get("k") == b"new"


async def test_lock_expiry_follows_the_clock(store: MemoryStore, clock: FakeClock) -> None:
    assert await store.acquire_lock("lock", "a", ttl_s=5)
    clock.now += 4
    assert not await store.acquire_lock("lock", "b", ttl_s=5)
    clock.now += 1
    assert await store.acquire_lock("lock", "b", ttl_s=5)
    assert not await store.release_lock("lock", "a")


async def test_rate_bucket_is_forgotten_once_it_would_be_full(
    store: MemoryStore, clock: FakeClock
) -> None:
    # burst / rate = 2 s to refill, plus a second of slack: remembered for 3 s of the clock.
    for key in ("kept", "forgotten"):
        assert [await store.rate_acquire(key, rate=1, burst=2, now=100.0) for _ in "ab"] == [0, 0]
    clock.now += 2.9
    assert await store.rate_acquire("kept", rate=1, burst=2, now=100.0) == 1.0
    clock.now += 0.2
    assert await store.rate_acquire("forgotten", rate=1, burst=2, now=100.0) == 0.0


async def test_shared_is_one_instance_per_url_and_prefix(url: str) -> None:
    assert MemoryStore.shared(url) is MemoryStore.shared(url)
    assert MemoryStore.shared(url, prefix="a:") is not MemoryStore.shared(url, prefix="b:")
    assert await connect(url) is MemoryStore.shared(url)


async def test_shared_stores_of_one_url_share_data_under_their_prefixes(url: str) -> None:
    await MemoryStore.shared(url).set("k", b"v")
    assert await MemoryStore.shared(url).get("k") == b"v"
    assert await MemoryStore.shared(url, prefix="other:").get("k") is None
    assert await MemoryStore.shared(url, prefix="").get("wxkf:k") == b"v"
    assert await MemoryStore.shared(url + "-elsewhere").get("k") is None


async def test_close_keeps_the_data_for_the_rest_of_the_process(url: str) -> None:
    store = MemoryStore.shared(url)
    await store.set("k", b"v")
    await store.close()
    assert await MemoryStore.shared(url).get("k") == b"v"


async def test_forget_starts_a_url_afresh(url: str) -> None:
    await MemoryStore.shared(url).set("k", b"v")
    MemoryStore.forget(url)
    assert await MemoryStore.shared(url).get("k") is None


async def test_expired_keys_nobody_reads_are_swept(
    store: MemoryStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory_module, "_SWEEP_EVERY", 10)
    for i in range(5):
        await store.set(f"old{i}", b"v", ttl_s=1)
    clock.now += 2
    for i in range(5):
        await store.set(f"new{i}", b"v")
    assert sorted(store._space.entries) == [f"wxkf:new{i}" for i in range(5)]


async def test_unknown_url_scheme_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unsupported store URL scheme 'mongodb'"):
        await connect("mongodb://localhost")
