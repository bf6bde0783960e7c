"""The store through Sentinel: it follows the primary across failovers without reopening.

Each test has a group of its own (a primary, a replica, a sentinel), since it fails it over.
The contract itself runs on Sentinel too (the ``sentinel`` backend of ``make_store``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from libs.common.store import StoreError, Write
from libs.common.store.redis import RedisStore
from tests.support.redis_sentinel import PASSWORD, SentinelGroup
from tests.support.scripts import SEAT
from tests.support.waiting import eventually

NOW = 1_700_000_000.0


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path) as started:
        yield started


async def test_writes_land_on_the_primary_the_sentinel_names(
    sentinel_group: SentinelGroup,
) -> None:
    group = sentinel_group
    store = await RedisStore.connect(group.url(db=3), prefix=f"p{id(group)}:")
    try:
        await store.set("k", b"v")
        primary = group.node(group.primary_port())
        primary.select(3)
        assert primary.get(f"p{id(group)}:k") == b"v"
    finally:
        await store.close()


async def test_a_failover_is_followed_with_state_and_scripts_intact(group: SentinelGroup) -> None:
    store = await RedisStore.connect(group.url(), prefix="f:")
    try:
        first = await store.claim(Write(key="mark:1", value=b"1", ttl_s=60), step=SEAT.on("w", 5))
        assert first.ok
        assert first.step == 1
        old = group.primary_port()
        await asyncio.to_thread(group.sync_replica)  # these wait on Redis processes

        new = await asyncio.to_thread(group.failover)

        assert new != old
        # The old primary is a replica now: the store's connection to it answers READONLY,
        # which sends the next call to the new primary, without reopening the store.
        again = await store.claim(Write(key="mark:2", value=b"2", ttl_s=60), step=SEAT.on("w", 5))
        assert again.ok
        assert again.step == 2
        # The promoted replica has a replication id of its own: its memory begins anew,
        # since what the old primary took last may never have reached it.
        assert again.since > first.since
        assert (await store.claim(Write(key="mark:1", value=b"x", ttl_s=60))).known == b"1"
        assert group.node(new).get("f:mark:2") == b"2"
    finally:
        await store.close()


async def test_a_dead_primary_is_a_store_error_until_the_replica_takes_over(
    group: SentinelGroup,
) -> None:
    store = await RedisStore.connect(group.url(), prefix="d:", timeout_s=0.5)
    try:
        await store.set("before", b"1")
        await asyncio.to_thread(group.sync_replica)
        await asyncio.to_thread(group.kill_primary)

        # While the sentinels still name the dead primary, calls fail as the store's own
        # error (callers answer 503 or retry through the bus), with no password in it.
        with pytest.raises(StoreError, match="sentinel wxkf-test via") as caught:
            await store.set("during", b"1")
        assert PASSWORD not in str(caught.value)

        await asyncio.to_thread(group.failover)

        async def writes() -> bool:
            try:
                await store.set("after", b"1")
            except StoreError:
                return False
            return True

        await eventually(writes, what="a write on the promoted replica")
        assert await store.get("before") == b"1"
        await store.ping()
    finally:
        await store.close()


async def test_no_sentinel_answering_is_a_store_error_without_credentials(
    closed_port: int,
) -> None:
    url = f"redis+sentinel://:{quote(PASSWORD, safe='')}@127.0.0.1:{closed_port}/nobody/0"
    store = await RedisStore.connect(url, timeout_s=0.5)
    try:
        with pytest.raises(StoreError) as caught:
            await store.ping()
        message = str(caught.value)
        assert f"sentinel nobody via 127.0.0.1:{closed_port}/0" in message
        assert "s3cret" not in message
    finally:
        await store.close()


async def test_a_wrong_password_is_refused_by_the_primary(sentinel_group: SentinelGroup) -> None:
    store = await RedisStore.connect(sentinel_group.url(password="wrong"), timeout_s=0.5)
    try:
        with pytest.raises(StoreError, match="sentinel wxkf-test"):
            await store.ping()
    finally:
        await store.close()
