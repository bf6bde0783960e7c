"""The reply-window rules, the same on memory:// and Redis: ``window.lua`` and its Python twin
in ``window_rules.py`` are held to one contract here, run on both backends, alone and as the
step of a claim."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from libs.common.store import Claim, RateLimit, Store, Write
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from services.sender import windows
from services.sender.window_rules import LINGER_S, Grant, WindowTake
from tests.support.redis_keys import REDIS_URL, delete_prefixed, store_on, unique_prefix

pytestmark = pytest.mark.integration

NOW = 1_750_000_000.25
H48 = 48 * 3600.0


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Store]:
    async with store_on(request.param, prefix) as opened:
        yield opened


def message(count: int = 5, until: float = NOW + H48) -> Grant:
    return Grant(kind="message", count=count, until=until)


def enter(count: int = 2, until: float = NOW + 60) -> Grant:
    return Grant(kind="enter", count=count, until=until)


async def take_all(store: Store, key: str, *, now: float = NOW) -> list[WindowTake]:
    """Take until refused; the refusal is the last element."""
    takes = [await windows.take(store, key, now=now)]
    while takes[-1].ok:
        takes.append(await windows.take(store, key, now=now))
        assert len(takes) < 100
    return takes


# -- grants, takes, releases, corrections -------------------------------------------------------


async def test_no_grant_means_no_window(store: Store) -> None:
    assert await windows.take(store, "w", now=NOW) == WindowTake(ok=False, reason="no_window")


async def test_a_grant_gives_exactly_its_count(store: Store) -> None:
    await windows.grant(store, "w", message(count=5), now=NOW)
    takes = await take_all(store, "w")
    assert [t.remaining for t in takes[:-1]] == [4, 3, 2, 1, 0]
    assert all(t.ok and t.kind == "message" for t in takes[:-1])
    assert takes[-1] == WindowTake(ok=False, reason="quota_exhausted")


async def test_window_room_answers_what_a_take_would_and_takes_nothing(store: Store) -> None:
    assert await windows.room(store, "w", now=NOW) == WindowTake(ok=False, reason="no_window")
    await windows.grant(store, "w", message(count=2, until=NOW + H48), now=NOW)
    await windows.grant(store, "w", enter(count=1, until=NOW + 60), now=NOW)
    # The grant that expires first, as window_take picks it; asked twice, the same answer.
    for _ in range(2):
        assert await windows.room(store, "w", now=NOW) == WindowTake(
            ok=True, kind="enter", remaining=1
        )
    takes = await take_all(store, "w")
    assert [(t.kind, t.remaining) for t in takes if t.ok] == [
        ("enter", 0),
        ("message", 1),
        ("message", 0),
    ]
    assert await windows.room(store, "w", now=NOW) == WindowTake(ok=False, reason="quota_exhausted")
    assert await windows.room(store, "w", now=NOW + H48) == WindowTake(
        ok=False, reason="window_expired"
    )


async def test_a_grant_past_its_until_is_expired(store: Store) -> None:
    await windows.grant(store, "w", message(count=5, until=NOW + 10), now=NOW)
    assert (await windows.take(store, "w", now=NOW + 9.999)).ok
    # until is exclusive: at until the window is already shut.
    assert await windows.take(store, "w", now=NOW + 10) == WindowTake(
        ok=False, reason="window_expired"
    )


async def test_expired_wins_over_exhausted_only_when_nothing_is_in_time(store: Store) -> None:
    await windows.grant(store, "w", enter(count=1, until=NOW + 60), now=NOW)
    await windows.grant(store, "w", message(count=1, until=NOW + 600), now=NOW)
    assert (await windows.take(store, "w", now=NOW)).kind == "enter"
    assert (await windows.take(store, "w", now=NOW)).kind == "message"
    assert (await windows.take(store, "w", now=NOW + 100)).reason == "quota_exhausted"
    assert (await windows.take(store, "w", now=NOW + 600)).reason == "window_expired"


async def test_take_uses_the_grant_that_expires_first(store: Store) -> None:
    await windows.grant(store, "w", message(count=5, until=NOW + H48), now=NOW)
    await windows.grant(store, "w", enter(count=2, until=NOW + 60), now=NOW)
    kinds = [t.kind for t in (await take_all(store, "w"))[:-1]]
    assert kinds == ["enter", "enter", "message", "message", "message", "message", "message"]


async def test_an_expired_grant_is_skipped_for_a_valid_one(store: Store) -> None:
    await windows.grant(store, "w", enter(count=2, until=NOW + 60), now=NOW)
    await windows.grant(store, "w", message(count=1, until=NOW + H48), now=NOW)
    later = NOW + 61
    first = await windows.take(store, "w", now=later)
    assert (first.ok, first.kind, first.remaining) == (True, "message", 0)
    assert (await windows.take(store, "w", now=later)).reason == "quota_exhausted"


async def test_a_redelivered_grant_never_resets_a_used_count(store: Store) -> None:
    await windows.grant(store, "w", message(count=5), now=NOW)
    for _ in range(3):
        assert (await windows.take(store, "w", now=NOW)).ok
    await windows.grant(store, "w", message(count=5), now=NOW + 1)  # same until: redelivery
    await windows.grant(store, "w", message(count=5, until=NOW + H48 - 1), now=NOW + 1)  # older
    assert [t.remaining for t in await take_all(store, "w")] == [1, 0, 0]


async def test_a_later_grant_renews_the_count(store: Store) -> None:
    await windows.grant(store, "w", message(count=5), now=NOW)
    assert (await take_all(store, "w"))[-1].reason == "quota_exhausted"
    await windows.grant(store, "w", message(count=5, until=NOW + H48 + 0.001), now=NOW + 1)
    takes = await take_all(store, "w", now=NOW + 1)
    assert len(takes) == 6


async def test_grants_of_the_two_kinds_are_independent(store: Store) -> None:
    await windows.grant(store, "w", message(count=1), now=NOW)
    assert (await windows.take(store, "w", now=NOW)).ok
    await windows.grant(store, "w", enter(count=2), now=NOW)  # must not renew "message"
    kinds = [t.kind for t in (await take_all(store, "w"))[:-1]]
    assert kinds == ["enter", "enter"]


async def test_concurrent_takes_never_exceed_the_count(store: Store) -> None:
    await windows.grant(store, "w", message(count=37), now=NOW)
    takes = await asyncio.gather(*(windows.take(store, "w", now=NOW) for _ in range(200)))
    granted = [t for t in takes if t.ok]
    assert len(granted) == 37
    assert sorted(t.remaining for t in granted) == list(range(37))
    assert {t.reason for t in takes if not t.ok} == {"quota_exhausted"}


async def test_release_gives_a_slot_back(store: Store) -> None:
    await windows.grant(store, "w", message(count=2), now=NOW)
    first = await windows.take(store, "w", now=NOW)
    assert first.kind == "message"
    await windows.release(store, "w", "message", now=NOW)
    assert [t.remaining for t in await take_all(store, "w")] == [1, 0, 0]
    await windows.release(store, "w", "message", now=NOW)
    assert (await windows.take(store, "w", now=NOW)).remaining == 0


async def test_release_never_goes_above_the_grant(store: Store) -> None:
    await windows.grant(store, "w", message(count=2), now=NOW)
    await windows.release(store, "w", "message", now=NOW)
    await windows.release(store, "w", "message", now=NOW)
    assert len(await take_all(store, "w")) == 3


async def test_release_after_expiry_or_without_grant_changes_nothing(store: Store) -> None:
    await windows.release(store, "w", "message", now=NOW)
    assert (await windows.take(store, "w", now=NOW)).reason == "no_window"
    await windows.grant(store, "w", message(count=1, until=NOW + 10), now=NOW)
    assert (await windows.take(store, "w", now=NOW)).ok
    await windows.release(store, "w", "message", now=NOW + 10)
    await windows.release(store, "w", "enter", now=NOW)
    assert (await windows.take(store, "w", now=NOW + 5)).reason == "quota_exhausted"


async def test_close_on_quota_exhausted_empties_every_grant(store: Store) -> None:
    await windows.grant(store, "w", message(count=5), now=NOW)
    await windows.grant(store, "w", enter(count=2), now=NOW)
    await windows.close(store, "w", now=NOW, reason="quota_exhausted")
    assert (await windows.take(store, "w", now=NOW)).reason == "quota_exhausted"
    await windows.grant(store, "w", message(count=5), now=NOW + 1)  # redelivery: stays shut
    assert (await windows.take(store, "w", now=NOW + 1)).reason == "quota_exhausted"
    await windows.grant(store, "w", message(count=5, until=NOW + H48 + 5), now=NOW + 5)
    assert (await windows.take(store, "w", now=NOW + 5)).remaining == 4


async def test_close_on_window_expired_ends_the_grants_now(store: Store) -> None:
    await windows.grant(store, "w", message(count=5), now=NOW)
    assert (await windows.take(store, "w", now=NOW)).ok
    await windows.close(store, "w", now=NOW + 30, reason="window_expired")
    assert (await windows.take(store, "w", now=NOW + 30)).reason == "window_expired"
    await windows.grant(store, "w", message(count=5), now=NOW + 31)  # redelivery: stays shut
    assert (await windows.take(store, "w", now=NOW + 31)).reason == "window_expired"
    await windows.grant(store, "w", message(count=5, until=NOW + 40 + H48), now=NOW + 40)
    assert (await windows.take(store, "w", now=NOW + 40)).remaining == 4


async def test_close_without_a_window_is_harmless(store: Store) -> None:
    await windows.close(store, "w", now=NOW, reason="window_expired")
    await windows.close(store, "w", now=NOW, reason="quota_exhausted")
    assert (await windows.take(store, "w", now=NOW)).reason == "no_window"


async def test_until_keeps_sub_second_precision(store: Store) -> None:
    until = NOW + 0.000_123
    await windows.grant(store, "w", message(count=1, until=until), now=NOW)
    assert (await windows.take(store, "w", now=math.nextafter(until, 0))).ok
    await windows.grant(
        store, "w", message(count=1, until=math.nextafter(until, math.inf)), now=NOW
    )
    assert (await windows.take(store, "w", now=until)).ok


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
        await windows.grant(store, "w", grant, now=NOW)
    assert (await windows.take(store, "w", now=NOW)).reason == "no_window"


async def test_bad_window_arguments_are_refused(store: Store) -> None:
    await windows.grant(store, "w", message(count=1), now=NOW)
    with pytest.raises(ValueError, match="now"):
        await windows.take(store, "w", now=math.inf)
    with pytest.raises(ValueError, match="kind"):
        await windows.release(store, "w", "nope", now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reason"):
        await windows.close(store, "w", now=NOW, reason="tired")  # type: ignore[arg-type]
    assert (await windows.take(store, "w", now=NOW)).ok


# -- the key's lifetime ----------------------------------------------------------------------------


async def test_a_window_lingers_past_its_latest_grant_then_is_gone() -> None:
    clock = _Clock(1000.0)
    store = MemoryStore(prefix="linger:", clock=clock)
    await windows.grant(store, "w", message(count=5, until=NOW + 60), now=NOW)
    clock.now += 60 + LINGER_S - 1
    assert (await windows.take(store, "w", now=NOW + 60 + LINGER_S - 1)).reason == (
        "window_expired"
    )
    clock.now += 1
    assert (await windows.take(store, "w", now=NOW + 60 + LINGER_S)).reason == "no_window"


async def test_on_redis_the_key_expires_a_linger_after_the_latest_until(prefix: str) -> None:
    store = await RedisStore.connect(REDIS_URL, prefix=prefix)
    raw = aioredis.Redis.from_url(REDIS_URL)
    try:
        now = NOW
        await windows.grant(store, "w", enter(count=2, until=now + 60), now=now)
        await windows.grant(store, "w", message(count=5, until=now + 600), now=now)
        ttl_ms = await raw.pttl(prefix + "w")
        assert abs(ttl_ms - (600 + LINGER_S) * 1000) < 5_000
    finally:
        await store.close()
        await raw.aclose()
        await delete_prefixed(prefix)


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- as the step of a claim ------------------------------------------------------------------------


def mark(key: str = "mark") -> Write:
    return Write(key=key, value=b"inflight", ttl_s=60.0)


def bare(claim: Claim[WindowTake]) -> Claim[WindowTake]:
    return Claim(ok=claim.ok, known=claim.known, step=claim.step, wait_s=claim.wait_s)


async def test_a_claim_takes_the_slot_take_would(store: Store) -> None:
    await windows.grant(store, "w", enter(count=1), now=NOW)
    await windows.grant(store, "w", message(count=2), now=NOW)
    first = await store.claim(mark("a"), step=windows.taking("w", now=NOW))
    assert bare(first) == Claim(ok=True, step=WindowTake(ok=True, kind="enter", remaining=0))
    second = await store.claim(mark("b"), step=windows.taking("w", now=NOW))
    assert bare(second) == Claim(ok=True, step=WindowTake(ok=True, kind="message", remaining=1))
    assert (await windows.room(store, "w", now=NOW)).remaining == 1


@pytest.mark.parametrize("reason", ["no_window", "quota_exhausted", "window_expired"])
async def test_a_window_without_a_slot_refuses_the_claim_and_nothing_is_taken(
    store: Store, reason: str
) -> None:
    if reason == "quota_exhausted":
        await windows.grant(store, "w", message(count=0), now=NOW)
    elif reason == "window_expired":
        await windows.grant(store, "w", message(until=NOW - 1), now=NOW)
    extra = Write(key="next", value=b"busy", ttl_s=60)
    rate = RateLimit(key="r", rate=1.0, burst=1, now=NOW)
    claim = await store.claim(mark(), step=windows.taking("w", now=NOW), rate=rate, also=[extra])
    assert bare(claim) == Claim(ok=False, step=WindowTake(ok=False, reason=reason))  # type: ignore[arg-type]
    assert await store.get("mark") is None
    assert await store.get("next") is None
    assert await store.rate_acquire("r", rate=1.0, burst=1, now=NOW) == 0.0


async def test_a_known_mark_wins_over_the_window_and_takes_nothing(store: Store) -> None:
    await windows.grant(store, "w", message(count=1), now=NOW)
    await store.set("mark", b"done")
    claim = await store.claim(mark(), step=windows.taking("w", now=NOW))
    assert bare(claim) == Claim(ok=False, known=b"done")
    assert (await windows.room(store, "w", now=NOW)).remaining == 1


async def test_concurrent_claims_never_exceed_the_window(store: Store) -> None:
    await windows.grant(store, "w", message(count=17), now=NOW)
    claims = await asyncio.gather(
        *(store.claim(mark(f"m{i}"), step=windows.taking("w", now=NOW)) for i in range(60))
    )
    granted = [c for c in claims if c.ok]
    assert len(granted) == 17
    assert sorted(c.step.remaining for c in granted if c.step) == list(range(17))
    assert {c.step.reason for c in claims if not c.ok and c.step} == {"quota_exhausted"}


# -- both forms, through the same random histories -------------------------------------------------


async def apply(store: Store, op: tuple[Any, ...]) -> object:
    name, key, now, *rest = op
    if name == "grant":
        kind, count, until = rest
        return await windows.grant(store, key, Grant(kind=kind, count=count, until=until), now=now)
    if name == "take":
        return await windows.take(store, key, now=now)
    if name == "room":
        return await windows.room(store, key, now=now)
    if name == "release":
        return await windows.release(store, key, rest[0], now=now)
    if name == "close":
        return await windows.close(store, key, now=now, reason=rest[0])
    claim = await store.claim(
        Write(key=f"{key}:{rest[0]}", value=b"x", ttl_s=3600), step=windows.taking(key, now=now)
    )
    return (claim.ok, claim.known, claim.step)


def history(rng: random.Random, length: int) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    now = NOW
    for _ in range(length):
        now += rng.choice([0.0, 0.0, 0.001, 0.5, 7.0, 30.0, 61.0])
        key = rng.choice(["u1", "u2"])
        pick = rng.random()
        if pick < 0.25:
            kind = rng.choice(["message", "enter"])
            span = H48 if kind == "message" else 60.0
            # Reuse an earlier start now and then: a redelivered event.
            start = now - rng.choice([0.0, 0.0, 10.0, 100.0])
            ops.append(("grant", key, now, kind, rng.randint(0, 5), start + span))
        elif pick < 0.45:
            ops.append(("take", key, now))
        elif pick < 0.55:
            ops.append(("room", key, now))
        elif pick < 0.7:
            ops.append(("release", key, now, rng.choice(["message", "enter"])))
        elif pick < 0.75:
            ops.append(("close", key, now, rng.choice(["window_expired", "quota_exhausted"])))
        else:
            ops.append(("claim", key, now, rng.randint(0, 8)))
    return ops


@pytest.mark.parametrize("seed", range(20))
async def test_both_forms_give_the_same_answers(prefix: str, seed: int) -> None:
    memory = MemoryStore(prefix=prefix)
    redis_store = await RedisStore.connect(REDIS_URL, prefix=prefix)
    try:
        for step, op in enumerate(history(random.Random(seed), 120)):
            expected = await apply(memory, op)
            got = await apply(redis_store, op)
            assert got == expected, (seed, step, op)
    finally:
        await redis_store.close()
        await delete_prefixed(prefix)
