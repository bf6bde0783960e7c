"""The store's behaviour, identical on memory:// and Redis (see conftest.py for both)."""

from __future__ import annotations

import asyncio
import math
import random
import time

import pytest

from libs.common.store import Grant, Store, StoreError, WindowTake

pytestmark = pytest.mark.integration

NOW = 1_750_000_000.25
H48 = 48 * 3600.0


def message(count: int = 5, until: float = NOW + H48) -> Grant:
    return Grant(kind="message", count=count, until=until)


def enter(count: int = 2, until: float = NOW + 60) -> Grant:
    return Grant(kind="enter", count=count, until=until)


async def take_all(store: Store, key: str, *, now: float = NOW) -> list[WindowTake]:
    """Take until refused; the refusal is the last element."""
    takes = [await store.window_take(key, now=now)]
    while takes[-1].ok:
        takes.append(await store.window_take(key, now=now))
        assert len(takes) < 100
    return takes


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
    await mine.window_grant("w", message(), now=NOW)
    await other.set("a", b"kept")
    assert await mine.clear() == 3
    assert await mine.get("a") is None
    assert (await mine.window_room("w", now=NOW)).reason == "no_window"
    assert await other.get("a") == b"kept"
    assert await mine.clear() == 0


async def test_a_key_of_another_kind_is_a_store_error(store: Store) -> None:
    await store.window_grant("w", message(), now=NOW)
    with pytest.raises(StoreError):
        await store.get("w")
    await store.set("plain", b"v")
    with pytest.raises(StoreError):
        await store.window_take("plain", now=NOW)


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


# -- reply windows ------------------------------------------------------------------------------


async def test_no_grant_means_no_window(store: Store) -> None:
    assert await store.window_take("w", now=NOW) == WindowTake(ok=False, reason="no_window")


async def test_a_grant_gives_exactly_its_count(store: Store) -> None:
    await store.window_grant("w", message(count=5), now=NOW)
    takes = await take_all(store, "w")
    assert [t.remaining for t in takes[:-1]] == [4, 3, 2, 1, 0]
    assert all(t.ok and t.kind == "message" for t in takes[:-1])
    assert takes[-1] == WindowTake(ok=False, reason="quota_exhausted")


async def test_window_room_answers_what_a_take_would_and_takes_nothing(store: Store) -> None:
    assert await store.window_room("w", now=NOW) == WindowTake(ok=False, reason="no_window")
    await store.window_grant("w", message(count=2, until=NOW + H48), now=NOW)
    await store.window_grant("w", enter(count=1, until=NOW + 60), now=NOW)
    # The grant that expires first, as window_take picks it; asked twice, the same answer.
    for _ in range(2):
        assert await store.window_room("w", now=NOW) == WindowTake(
            ok=True, kind="enter", remaining=1
        )
    takes = await take_all(store, "w")
    assert [(t.kind, t.remaining) for t in takes if t.ok] == [
        ("enter", 0),
        ("message", 1),
        ("message", 0),
    ]
    assert await store.window_room("w", now=NOW) == WindowTake(ok=False, reason="quota_exhausted")
    assert await store.window_room("w", now=NOW + H48) == WindowTake(
        ok=False, reason="window_expired"
    )


async def test_a_grant_past_its_until_is_expired(store: Store) -> None:
    await store.window_grant("w", message(count=5, until=NOW + 10), now=NOW)
    assert (await store.window_take("w", now=NOW + 9.999)).ok
    # until is exclusive: at until the window is already shut.
    assert await store.window_take("w", now=NOW + 10) == WindowTake(
        ok=False, reason="window_expired"
    )


async def test_expired_wins_over_exhausted_only_when_nothing_is_in_time(store: Store) -> None:
    await store.window_grant("w", enter(count=1, until=NOW + 60), now=NOW)
    await store.window_grant("w", message(count=1, until=NOW + 600), now=NOW)
    assert (await store.window_take("w", now=NOW)).kind == "enter"
    assert (await store.window_take("w", now=NOW)).kind == "message"
    assert (await store.window_take("w", now=NOW + 100)).reason == "quota_exhausted"
    assert (await store.window_take("w", now=NOW + 600)).reason == "window_expired"


async def test_take_uses_the_grant_that_expires_first(store: Store) -> None:
    await store.window_grant("w", message(count=5, until=NOW + H48), now=NOW)
    await store.window_grant("w", enter(count=2, until=NOW + 60), now=NOW)
    kinds = [t.kind for t in (await take_all(store, "w"))[:-1]]
    assert kinds == ["enter", "enter", "message", "message", "message", "message", "message"]


async def test_an_expired_grant_is_skipped_for_a_valid_one(store: Store) -> None:
    await store.window_grant("w", enter(count=2, until=NOW + 60), now=NOW)
    await store.window_grant("w", message(count=1, until=NOW + H48), now=NOW)
    later = NOW + 61
    first = await store.window_take("w", now=later)
    assert (first.ok, first.kind, first.remaining) == (True, "message", 0)
    assert (await store.window_take("w", now=later)).reason == "quota_exhausted"


async def test_a_redelivered_grant_never_resets_a_used_count(store: Store) -> None:
    await store.window_grant("w", message(count=5), now=NOW)
    for _ in range(3):
        assert (await store.window_take("w", now=NOW)).ok
    await store.window_grant("w", message(count=5), now=NOW + 1)  # same until: redelivery
    await store.window_grant("w", message(count=5, until=NOW + H48 - 1), now=NOW + 1)  # older
    assert [t.remaining for t in await take_all(store, "w")] == [1, 0, 0]


async def test_a_later_grant_renews_the_count(store: Store) -> None:
    await store.window_grant("w", message(count=5), now=NOW)
    assert (await take_all(store, "w"))[-1].reason == "quota_exhausted"
    await store.window_grant("w", message(count=5, until=NOW + H48 + 0.001), now=NOW + 1)
    takes = await take_all(store, "w", now=NOW + 1)
    assert len(takes) == 6


async def test_grants_of_the_two_kinds_are_independent(store: Store) -> None:
    await store.window_grant("w", message(count=1), now=NOW)
    assert (await store.window_take("w", now=NOW)).ok
    await store.window_grant("w", enter(count=2), now=NOW)  # must not renew "message"
    kinds = [t.kind for t in (await take_all(store, "w"))[:-1]]
    assert kinds == ["enter", "enter"]


async def test_concurrent_takes_never_exceed_the_count(store: Store) -> None:
    await store.window_grant("w", message(count=37), now=NOW)
    takes = await asyncio.gather(*(store.window_take("w", now=NOW) for _ in range(200)))
    granted = [t for t in takes if t.ok]
    assert len(granted) == 37
    assert sorted(t.remaining for t in granted) == list(range(37))
    assert {t.reason for t in takes if not t.ok} == {"quota_exhausted"}


async def test_release_gives_a_slot_back(store: Store) -> None:
    await store.window_grant("w", message(count=2), now=NOW)
    first = await store.window_take("w", now=NOW)
    assert first.kind == "message"
    await store.window_release("w", "message", now=NOW)
    assert [t.remaining for t in await take_all(store, "w")] == [1, 0, 0]
    await store.window_release("w", "message", now=NOW)
    assert (await store.window_take("w", now=NOW)).remaining == 0


async def test_release_never_goes_above_the_grant(store: Store) -> None:
    await store.window_grant("w", message(count=2), now=NOW)
    await store.window_release("w", "message", now=NOW)
    await store.window_release("w", "message", now=NOW)
    assert len(await take_all(store, "w")) == 3


async def test_release_after_expiry_or_without_grant_changes_nothing(store: Store) -> None:
    await store.window_release("w", "message", now=NOW)
    assert (await store.window_take("w", now=NOW)).reason == "no_window"
    await store.window_grant("w", message(count=1, until=NOW + 10), now=NOW)
    assert (await store.window_take("w", now=NOW)).ok
    await store.window_release("w", "message", now=NOW + 10)
    await store.window_release("w", "enter", now=NOW)
    assert (await store.window_take("w", now=NOW + 5)).reason == "quota_exhausted"


async def test_close_on_quota_exhausted_empties_every_grant(store: Store) -> None:
    await store.window_grant("w", message(count=5), now=NOW)
    await store.window_grant("w", enter(count=2), now=NOW)
    await store.window_close("w", now=NOW, reason="quota_exhausted")
    assert (await store.window_take("w", now=NOW)).reason == "quota_exhausted"
    await store.window_grant("w", message(count=5), now=NOW + 1)  # redelivery: stays shut
    assert (await store.window_take("w", now=NOW + 1)).reason == "quota_exhausted"
    await store.window_grant("w", message(count=5, until=NOW + H48 + 5), now=NOW + 5)
    assert (await store.window_take("w", now=NOW + 5)).remaining == 4


async def test_close_on_window_expired_ends_the_grants_now(store: Store) -> None:
    await store.window_grant("w", message(count=5), now=NOW)
    assert (await store.window_take("w", now=NOW)).ok
    await store.window_close("w", now=NOW + 30, reason="window_expired")
    assert (await store.window_take("w", now=NOW + 30)).reason == "window_expired"
    await store.window_grant("w", message(count=5), now=NOW + 31)  # redelivery: stays shut
    assert (await store.window_take("w", now=NOW + 31)).reason == "window_expired"
    await store.window_grant("w", message(count=5, until=NOW + 40 + H48), now=NOW + 40)
    assert (await store.window_take("w", now=NOW + 40)).remaining == 4


async def test_close_without_a_window_is_harmless(store: Store) -> None:
    await store.window_close("w", now=NOW, reason="window_expired")
    await store.window_close("w", now=NOW, reason="quota_exhausted")
    assert (await store.window_take("w", now=NOW)).reason == "no_window"


async def test_until_keeps_sub_second_precision(store: Store) -> None:
    until = NOW + 0.000_123
    await store.window_grant("w", message(count=1, until=until), now=NOW)
    assert (await store.window_take("w", now=math.nextafter(until, 0))).ok
    await store.window_grant("w", message(count=1, until=math.nextafter(until, math.inf)), now=NOW)
    assert (await store.window_take("w", now=until)).ok


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
    ("grant", "match"),
    [
        (Grant(kind="bogus", count=5, until=NOW + 10), "kind"),  # type: ignore[arg-type]
        (Grant(kind="message", count=-1, until=NOW + 10), "count"),
        (Grant(kind="message", count=1.5, until=NOW + 10), "count"),  # type: ignore[arg-type]
        (Grant(kind="message", count=5, until=math.nan), "until"),
    ],
)
async def test_bad_grants_are_refused_and_write_nothing(store: Store, grant, match) -> None:
    with pytest.raises(ValueError, match=match):
        await store.window_grant("w", grant, now=NOW)
    assert (await store.window_take("w", now=NOW)).reason == "no_window"


async def test_bad_window_arguments_are_refused(store: Store) -> None:
    await store.window_grant("w", message(count=1), now=NOW)
    with pytest.raises(ValueError, match="now"):
        await store.window_take("w", now=math.inf)
    with pytest.raises(ValueError, match="kind"):
        await store.window_release("w", "nope", now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reason"):
        await store.window_close("w", now=NOW, reason="tired")  # type: ignore[arg-type]
    assert (await store.window_take("w", now=NOW)).ok


@pytest.mark.parametrize(
    ("rate", "burst", "match"),
    [(0, 1, "rate"), (-1, 1, "rate"), (math.nan, 1, "rate"), (1, 0, "burst"), (1, 1.5, "burst")],
)
async def test_bad_rate_limits_are_refused(store: Store, rate, burst, match) -> None:
    with pytest.raises(ValueError, match=match):
        await store.rate_acquire("r", rate=rate, burst=burst, now=NOW)
    assert await store.rate_acquire("r", rate=1, burst=1, now=NOW) == 0.0
