"""The store's behaviour, identical on memory:// and Redis (see conftest.py for both)."""

from __future__ import annotations

import asyncio
import math
import random
import time

import pytest

from libs.common.store import Store, StoreError
from tests.support.scripts import ADD

pytestmark = pytest.mark.integration

NOW = 1_750_000_000.25


# -- plain keys ---------------------------------------------------------------------------------


async def test_set_get_round_trips_bytes_exactly(store: Store) -> None:
    data = bytes(range(256))
    await store.set("k", data)
    assert await store.get("k") == data
    await store.set("k", b"second")
    assert await store.get("k") == b"second"
    assert await store.get("missing") is None


async def test_set_with_ttl_expires(store: Store, wait_until) -> None:
    await store.set("k", b"v", ttl_s=0.2)
    assert await store.get("k") == b"v"

    async def gone() -> bool:
        return await store.get("k") is None

    await wait_until(gone)


async def test_set_if_absent_first_writer_wins(store: Store) -> None:
    results = await asyncio.gather(
        *(store.set_if_absent("dedupe", f"writer-{i}".encode(), ttl_s=60) for i in range(50))
    )
    assert results.count(True) == 1
    winner = results.index(True)
    assert await store.get("dedupe") == f"writer-{winner}".encode()
    assert await store.set_if_absent("dedupe", b"late", ttl_s=60) is False
    assert await store.get("dedupe") == f"writer-{winner}".encode()


async def test_set_if_absent_frees_the_key_when_its_ttl_ends(store: Store, wait_until) -> None:
    assert await store.set_if_absent("dedupe", b"pending", ttl_s=0.2)

    async def free_again() -> bool:
        return await store.set_if_absent("dedupe", b"retry", ttl_s=60)

    await wait_until(free_again)
    assert await store.get("dedupe") == b"retry"


async def test_delete(store: Store) -> None:
    await store.set("k", b"v")
    await store.delete("k")
    assert await store.get("k") is None
    await store.delete("k")  # deleting what is gone is fine


async def test_delete_if_equals_only_removes_the_expected_value(store: Store) -> None:
    await store.set("k", b"mine")
    assert await store.delete_if_equals("k", b"theirs") is False
    assert await store.get("k") == b"mine"
    assert await store.delete_if_equals("k", b"mine") is True
    assert await store.get("k") is None
    assert await store.delete_if_equals("k", b"mine") is False


async def test_prefixes_do_not_see_each_other(make_store) -> None:
    a, b = await make_store("a:"), await make_store("b:")
    await a.set("k", b"from-a")
    assert await b.get("k") is None
    await b.set("k", b"from-b")
    assert await a.get("k") == b"from-a"


async def test_clear_deletes_every_key_of_its_prefix_and_no_other(make_store) -> None:
    mine, other = await make_store("mine:"), await make_store("other:")
    await mine.set("a", b"1")
    await mine.set("b", b"2", ttl_s=60)
    await mine.run(ADD, "w", 4)
    await other.set("a", b"kept")
    assert await mine.clear() == 3
    assert await mine.get("a") is None
    assert await mine.get("b") is None
    assert await other.get("a") == b"kept"
    assert await mine.clear() == 0


async def test_a_key_of_another_kind_is_a_store_error(store: Store) -> None:
    await store.run(ADD, "w", 1)
    with pytest.raises(StoreError):
        await store.get("w")
    await store.set("plain", b"v")
    with pytest.raises(StoreError):
        await store.run(ADD, "plain", 1)


async def test_ping(store: Store) -> None:
    await store.ping()


# -- locks --------------------------------------------------------------------------------------


async def test_lock_is_exclusive_and_released_by_its_owner_only(store: Store) -> None:
    assert await store.acquire_lock("lock", "a", ttl_s=30)
    assert not await store.acquire_lock("lock", "b", ttl_s=30)
    assert not await store.acquire_lock("lock", "a", ttl_s=30)  # not re-entrant
    assert await store.release_lock("lock", "b") is False
    assert not await store.acquire_lock("lock", "b", ttl_s=30)
    assert await store.release_lock("lock", "a") is True
    assert await store.release_lock("lock", "a") is False
    assert await store.acquire_lock("lock", "b", ttl_s=30)


async def test_lock_has_one_winner_among_concurrent_owners(store: Store) -> None:
    won = await asyncio.gather(*(store.acquire_lock("lock", f"o{i}", ttl_s=30) for i in range(50)))
    assert won.count(True) == 1


async def test_lock_expires_and_the_old_owner_cannot_release_the_new_one(
    store: Store, wait_until
) -> None:
    assert await store.acquire_lock("lock", "slow", ttl_s=0.2)

    async def taken_over() -> bool:
        return await store.acquire_lock("lock", "next", ttl_s=30)

    await wait_until(taken_over)
    assert await store.release_lock("lock", "slow") is False
    assert not await store.acquire_lock("lock", "third", ttl_s=30)
    assert await store.release_lock("lock", "next") is True


# -- an owner's script ---------------------------------------------------------------------------


async def test_a_script_runs_its_form_for_the_backend_and_keeps_its_state(store: Store) -> None:
    assert await store.run(ADD, "seats", 2) == 2
    assert await store.run(ADD, "seats", 3) == 5
    assert await store.run(ADD, "other", 1) == 1


async def test_a_script_on_a_key_of_another_kind_is_a_store_error(store: Store) -> None:
    await store.set("plain", b"v")
    with pytest.raises(StoreError):
        await store.run(ADD, "plain", 1)
    assert await store.get("plain") == b"v"


@pytest.mark.parametrize(("args", "match"), [((math.nan,), "finite"), ((None,), "argument")])
async def test_bad_script_arguments_are_refused(store: Store, args, match) -> None:
    with pytest.raises(ValueError, match=match):
        await store.run(ADD, "seats", *args)
    assert await store.run(ADD, "seats", 0) == 0


# -- rate limit ---------------------------------------------------------------------------------


async def test_rate_bucket_starts_full_then_refills_at_the_rate(store: Store) -> None:
    t = NOW
    assert [await store.rate_acquire("r", rate=2, burst=3, now=t) for _ in range(3)] == [0.0] * 3
    assert await store.rate_acquire("r", rate=2, burst=3, now=t) == pytest.approx(0.5)
    # Asking again does not take anything.
    assert await store.rate_acquire("r", rate=2, burst=3, now=t + 0.25) == pytest.approx(0.25)
    assert await store.rate_acquire("r", rate=2, burst=3, now=t + 0.5) == 0.0
    assert await store.rate_acquire("r", rate=2, burst=3, now=t + 0.5) == pytest.approx(0.5)
    # A long pause refills only up to the burst.
    later = t + 3600
    taken = [await store.rate_acquire("r", rate=2, burst=3, now=later) for _ in range(4)]
    assert taken[:3] == [0.0] * 3
    assert taken[3] > 0


async def test_rate_clock_going_backwards_never_refills(store: Store) -> None:
    assert await store.rate_acquire("r", rate=1, burst=1, now=NOW) == 0.0
    assert await store.rate_acquire("r", rate=1, burst=1, now=NOW - 100) == pytest.approx(1.0)
    assert await store.rate_acquire("r", rate=1, burst=1, now=NOW + 1) == 0.0


async def test_rate_never_exceeds_rate_times_time_plus_burst(store: Store) -> None:
    rate, burst = 200.0, 10
    stop_at = time.time() + 0.5
    taken: list[float] = []
    denied = 0

    async def caller(seed: int) -> None:
        nonlocal denied
        rng = random.Random(seed)
        while (now := time.time()) < stop_at:
            wait = await store.rate_acquire("shared", rate=rate, burst=burst, now=now)
            if wait == 0.0:
                taken.append(now)
            else:
                denied += 1
                assert 0 < wait <= 1 / rate + 1e-9
                await asyncio.sleep(rng.uniform(0, wait))

    await asyncio.gather(*(caller(i) for i in range(20)))
    assert len(taken) >= burst
    assert denied > 0
    span = max(taken) - min(taken)
    assert len(taken) <= rate * span + burst + 1e-6


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf, "10"])
async def test_bad_ttl_is_refused_and_writes_nothing(store: Store, ttl) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        await store.set_if_absent("k", b"v", ttl_s=ttl)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.set("k", b"v", ttl_s=ttl)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.acquire_lock("k", "owner", ttl_s=ttl)
    assert await store.get("k") is None


async def test_bad_keys_values_and_owners_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="key"):
        await store.set("", b"v")
    with pytest.raises(ValueError, match="bytes"):
        await store.set("k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="owner"):
        await store.acquire_lock("k", "", ttl_s=1)
    assert await store.get("k") is None


@pytest.mark.parametrize(
    ("rate", "burst", "match"),
    [(0, 1, "rate"), (-1, 1, "rate"), (math.nan, 1, "rate"), (1, 0, "burst"), (1, 1.5, "burst")],
)
async def test_bad_rate_limits_are_refused(store: Store, rate, burst, match) -> None:
    with pytest.raises(ValueError, match=match):
        await store.rate_acquire("r", rate=rate, burst=burst, now=NOW)
    assert await store.rate_acquire("r", rate=1, burst=1, now=NOW) == 0.0
