"""What every claim also answers (whether a flag key exists, when the store's memory began),
and streams: the same on memory://, Redis and Redis through Sentinel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from libs.common.store import Recall, Store, Write
from libs.common.store.redis import RedisStore
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def mark(key: str = "mark", value: bytes = b"v") -> Write:
    return Write(key=key, value=value, ttl_s=60.0)


async def test_a_claim_says_whether_its_flag_key_exists_whatever_it_answers(
    store: Store,
) -> None:
    assert not (await store.claim(mark("a"), flag="busy")).flagged
    assert (await store.stream_append("s", b"x", flag="busy", limit=10)) is True
    written = await store.claim(mark("b"), flag="busy")
    known = await store.claim(mark("b"), flag="busy")
    assert written.ok
    assert written.flagged
    assert known.known == b"v"
    assert known.flagged
    assert not (await store.claim(mark("c"))).flagged  # no flag asked for


async def test_every_claim_answers_the_same_start_of_memory(store: Store) -> None:
    first = await store.claim(mark("a"))
    second = await store.claim(mark("a"))
    assert first.since == second.since
    assert 0 < first.since <= time.time() + 1


async def test_a_stream_keeps_its_entries_in_order_until_removed(store: Store) -> None:
    values = [b"one", b"\x00binary\xff", b"three"]
    for value in values:
        assert await store.stream_append("s", value, flag="f", limit=10)
    head = await store.stream_head("s", count=2)
    assert [value for _, value in head] == values[:2]
    assert await store.stream_remove("s", [head[0][0]], flag="f") == 2
    assert (await store.claim(mark(), flag="f")).flagged
    rest = await store.stream_head("s", count=10)
    assert [value for _, value in rest] == values[1:]
    assert await store.stream_remove("s", [entry for entry, _ in rest], flag="f") == 0
    # The flag goes with the last entry, in the same step.
    assert not (await store.claim(mark("other"), flag="f")).flagged
    assert await store.stream_head("s", count=10) == []


async def test_a_full_stream_refuses_and_keeps_what_it_has(store: Store) -> None:
    assert await store.stream_append("s", b"1", flag="f", limit=2)
    assert await store.stream_append("s", b"2", flag="f", limit=2)
    assert not await store.stream_append("s", b"3", flag="f", limit=2)
    assert [v for _, v in await store.stream_head("s", count=5)] == [b"1", b"2"]


async def test_removing_from_a_stream_that_is_gone_clears_its_flag(store: Store) -> None:
    await store.set("f", b"1")
    assert await store.stream_remove("nothing", ["1-0"], flag="f") == 0
    assert await store.get("f") is None


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
async def test_stream_limits_and_counts_must_be_positive_integers(store: Store, bad: int) -> None:
    with pytest.raises(ValueError, match="integer >= 1"):
        await store.stream_append("s", b"x", flag="f", limit=bad)
    with pytest.raises(ValueError, match="integer >= 1"):
        await store.stream_head("s", count=bad)
    assert await store.stream_head("s", count=1) == []


async def test_a_redis_that_lost_its_data_answers_a_new_start_of_memory(tmp_path: Path) -> None:
    with RedisServer.started(tmp_path) as server:
        store = await RedisStore.connect(server.url(), prefix="t:")
        recall = Recall()
        try:
            before = await store.claim(mark("a"))
            born = time.time()
            assert not recall.forgotten(before, born)
            again = await store.claim(mark("b"))
            assert again.since == before.since
            assert not recall.forgotten(again, born)

            server.restart_empty()

            after = await store.claim(mark("c"))
            assert after.since > before.since
            # Something born before the loss may have been forgotten; something born after
            # it cannot have been.
            assert recall.forgotten(after, born)
            assert not recall.forgotten(after, time.time() + 1)
        finally:
            await store.close()
