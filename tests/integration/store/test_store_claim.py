"""``claim`` and ``set_many``: several steps in one atomic call, the same on memory:// and Redis.

A claim writes a mark unless present, takes its owner's step (here a seat of a capped counter,
tests/support/scripts.py; the sender's reply window has its own contract test) and a
rate-limit token, and makes further writes: all of them or none. These tests check each
obstacle leaves everything untouched, and that concurrent claims never share a mark or take
more than the step allows.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from libs.common.store import Claim, RateLimit, StepCall, Store, StoreError, Write
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from tests.support.scripts import ADD, SEAT

pytestmark = pytest.mark.integration

NOW = 1_750_000_000.25


def bare(claim: Claim[Any]) -> Claim[Any]:
    """The claim without the parts every answer carries (``since``, ``flagged``)."""
    return Claim(ok=claim.ok, known=claim.known, step=claim.step, wait_s=claim.wait_s)


def mark(value: bytes = b"inflight", ttl_s: float | None = 60.0, key: str = "mark") -> Write:
    return Write(key=key, value=value, ttl_s=ttl_s)


def bucket(now: float = NOW, *, rate: float = 1.0, burst: int = 1) -> RateLimit:
    return RateLimit(key="r", rate=rate, burst=burst, now=now)


def seat(cap: int = 5, key: str = "w") -> StepCall[int | str]:
    """A seat of "w" while fewer than ``cap`` are taken."""
    return SEAT.on(key, cap)


async def taken(store: Store) -> int:
    """Seats of "w" taken so far."""
    n = await store.run(ADD, "w", 0)
    assert isinstance(n, int)
    return n


# -- claim: what it takes -------------------------------------------------------------------------


async def test_a_claim_writes_its_mark_once(store: Store) -> None:
    assert bare(await store.claim(mark(b"first"))) == Claim(ok=True)
    assert await store.get("mark") == b"first"
    assert bare(await store.claim(mark(b"second"))) == Claim(ok=False, known=b"first")
    assert await store.get("mark") == b"first"
    await store.delete("mark")
    assert (await store.claim(mark(b"third"))).ok


async def test_a_known_mark_comes_back_byte_for_byte(store: Store) -> None:
    value = bytes(range(256))
    assert (await store.claim(mark(value))).ok
    assert bare(await store.claim(mark(b"again"))) == Claim(ok=False, known=value)


async def test_a_claim_takes_its_step_and_answers_what_the_step_said(store: Store) -> None:
    await store.run(ADD, "w", 1)
    first = await store.claim(mark(key="a"), step=seat(3))
    assert bare(first) == Claim(ok=True, step=2)
    second = await store.claim(mark(key="b"), step=seat(3))
    assert bare(second) == Claim(ok=True, step=3)
    assert await taken(store) == 3


@pytest.mark.parametrize("cap", [0, 2])
async def test_a_step_that_refuses_takes_nothing(store: Store, cap: int) -> None:
    await store.run(ADD, "w", cap)
    extra = Write(key="next", value=b"busy", ttl_s=60)
    claim = await store.claim(mark(), step=seat(cap), rate=bucket(), also=[extra])
    assert bare(claim) == Claim(ok=False, step="full")
    assert await taken(store) == cap
    assert await store.get("mark") is None
    assert await store.get("next") is None
    # The bucket's one token is still there.
    assert await store.rate_acquire("r", rate=1.0, burst=1, now=NOW) == 0.0


async def test_a_known_mark_wins_over_every_other_obstacle_and_takes_nothing(
    store: Store,
) -> None:
    await store.set("mark", b"done")
    assert await store.rate_acquire("r", rate=1.0, burst=1, now=NOW) == 0.0  # bucket empty
    claim = await store.claim(mark(), step=seat(1), rate=bucket())
    assert bare(claim) == Claim(ok=False, known=b"done")
    assert await taken(store) == 0
    await store.delete("mark")
    refused = await store.claim(mark(), step=seat(0), rate=bucket())
    assert refused.step == "full"


async def test_an_empty_bucket_says_how_long_and_nothing_is_taken(store: Store) -> None:
    assert await store.rate_acquire("r", rate=2.0, burst=1, now=NOW) == 0.0
    waiting = await store.claim(mark(), step=seat(3), rate=bucket(rate=2.0))
    assert not waiting.ok
    assert waiting.wait_s == pytest.approx(0.5)
    assert await store.get("mark") is None
    assert await taken(store) == 0
    later = await store.claim(mark(), step=seat(3), rate=bucket(NOW + 0.5, rate=2.0))
    assert later.ok
    assert await taken(store) == 1


async def test_a_claim_spends_one_token_as_rate_acquire_does(store: Store) -> None:
    for i in range(3):
        claim = await store.claim(mark(key=f"m{i}"), rate=bucket(burst=3))
        assert bare(claim) == Claim(ok=True)
    assert await store.rate_acquire("r", rate=1.0, burst=3, now=NOW) == pytest.approx(1.0)
    # A clock behind the bucket's never refills it.
    behind = await store.claim(mark(key="m9"), rate=bucket(NOW - 100, burst=3))
    assert behind.wait_s == pytest.approx(1.0)


async def test_concurrent_claims_never_spend_more_tokens_than_the_bucket_holds(
    store: Store,
) -> None:
    claims = await asyncio.gather(
        *(store.claim(mark(key=f"m{i}"), rate=bucket(burst=5)) for i in range(12)),
        *(store.claim(mark(key=f"m{i}"), rate=bucket(burst=5)) for i in range(2)),
    )
    assert [c.ok for c in claims[:5]] == [True] * 5
    assert [c.wait_s for c in claims[5:12]] == [pytest.approx(1.0)] * 7
    assert [c.known for c in claims[12:]] == [b"inflight"] * 2
    # What they took is in the store for the next caller; half a second on, half a token.
    later = await store.claim(mark(key="late"), rate=bucket(NOW + 0.5, burst=5))
    assert later.wait_s == pytest.approx(0.5)
    assert await store.rate_acquire("r", rate=1.0, burst=5, now=NOW + 1) == 0.0


async def test_a_write_over_a_bucket_a_claim_just_used_comes_after_it(store: Store) -> None:
    took, written = await asyncio.gather(
        store.claim(mark(), rate=bucket(burst=5)),
        store.set_many([Write(key="r", value=b"plain")]),
    )
    assert took.ok
    assert written is None
    assert await store.get("r") == b"plain"


async def test_other_writes_are_made_only_with_the_claim(store: Store) -> None:
    extra = [Write(key="x", value=b"1", ttl_s=60), Write(key="y", value=b"2")]
    assert (await store.claim(mark(key="a"), step=seat(1), also=extra)).ok
    assert (await store.get("x"), await store.get("y")) == (b"1", b"2")
    await store.delete("x")
    refused = await store.claim(mark(key="b"), step=seat(1), also=extra)
    assert refused.step == "full"
    assert await store.get("x") is None


async def test_a_mark_expires_with_its_ttl(store: Store, wait_until) -> None:
    assert (await store.claim(mark(ttl_s=0.2))).ok

    async def claimable_again() -> bool:
        return (await store.claim(mark(b"again"))).ok

    await wait_until(claimable_again)
    assert await store.get("mark") == b"again"


async def test_concurrent_claims_of_one_mark_have_one_winner(store: Store) -> None:
    claims = await asyncio.gather(
        *(store.claim(mark(f"d{i}".encode()), step=seat(10)) for i in range(30))
    )
    winners = [i for i, c in enumerate(claims) if c.ok]
    assert len(winners) == 1
    assert await store.get("mark") == f"d{winners[0]}".encode()
    assert {c.known for c in claims if not c.ok} == {f"d{winners[0]}".encode()}
    assert await taken(store) == 1


async def test_concurrent_claims_never_take_more_than_the_step_allows(store: Store) -> None:
    claims = await asyncio.gather(
        *(store.claim(mark(key=f"m{i}"), step=seat(17)) for i in range(60))
    )
    granted = [c for c in claims if c.ok]
    assert len(granted) == 17
    assert sorted(c.step for c in granted if isinstance(c.step, int)) == list(range(1, 18))
    assert {c.step for c in claims if not c.ok} == {"full"}


# -- claim: bad input and keys of another kind -------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mark": Write(key="", value=b"v")}, "key"),
        ({"mark": Write(key="m", value="text")}, "bytes"),  # type: ignore[arg-type]
        ({"mark": Write(key="m", value=b"v", ttl_s=0)}, "ttl_s"),
        ({"mark": ("m", b"v")}, "Write"),
        ({"step": SEAT.on("", 1)}, "key"),
        ({"step": SEAT.on("w", math.nan)}, "finite"),
        ({"step": SEAT.on("w", True)}, "argument"),
        ({"step": ("w", 1)}, "StepCall"),
        ({"rate": RateLimit(key="r", rate=0, burst=1, now=NOW)}, "rate"),
        ({"rate": RateLimit(key="r", rate=1, burst=0, now=NOW)}, "burst"),
        ({"rate": RateLimit(key="r", rate=1, burst=1, now=math.inf)}, "now"),
        ({"also": [Write(key="x", value=b"v", ttl_s=-1)]}, "ttl_s"),
    ],
)
async def test_bad_claims_are_refused_and_change_nothing(
    store: Store, kwargs: dict[str, Any], match: str
) -> None:
    args = {"mark": mark(), **kwargs}
    with pytest.raises(ValueError, match=match):
        await store.claim(**args)
    assert await store.get("mark") is None
    assert await store.get("x") is None
    assert await taken(store) == 0
    assert await store.rate_acquire("r", rate=1.0, burst=1, now=NOW) == 0.0


async def test_a_key_of_another_kind_fails_the_claim_before_any_write(store: Store) -> None:
    await store.set("w", b"plain")
    with pytest.raises(StoreError):
        await store.claim(mark(), step=seat(), also=[Write(key="x", value=b"1")])
    assert await store.get("mark") is None
    assert await store.get("x") is None
    await store.run(ADD, "w2", 1)
    with pytest.raises(StoreError):
        await store.claim(Write(key="w2", value=b"v"))
    with pytest.raises(StoreError):
        await store.claim(mark(), rate=RateLimit(key="w", rate=1, burst=1, now=NOW))
    assert await store.get("mark") is None


# -- set_many -------------------------------------------------------------------------------------


async def test_set_many_writes_every_key(store: Store, wait_until) -> None:
    await store.set("b", b"old")
    await store.set_many(
        [
            Write(key="a", value=b"1"),
            Write(key="b", value=bytes(range(256)), ttl_s=60),
            Write(key="short", value=b"s", ttl_s=0.2),
            Write(key="a", value=b"2"),  # the later write of a key wins
        ]
    )
    assert await store.get("a") == b"2"
    assert await store.get("b") == bytes(range(256))

    async def short_gone() -> bool:
        return await store.get("short") is None

    await wait_until(short_gone)
    assert await store.get("a") == b"2"


async def test_set_many_of_nothing_does_nothing(store: Store) -> None:
    await store.set_many([])
    assert await store.get("a") is None


@pytest.mark.parametrize(
    "bad",
    [
        Write(key="", value=b"v"),
        Write(key="k", value="text"),  # type: ignore[arg-type]
        Write(key="k", value=b"v", ttl_s=math.nan),
        Write(key="k", value=b"v", ttl_s=0),
    ],
)
async def test_set_many_with_a_bad_write_writes_nothing(store: Store, bad: Write) -> None:
    with pytest.raises(ValueError, match=r"key|bytes|ttl_s"):
        await store.set_many([Write(key="good", value=b"v"), bad])
    assert await store.get("good") is None


# -- the two backends answer random histories alike ---------------------------------------------


@pytest.fixture
async def both(
    prefix: str, redis_url: str, raw_redis: aioredis.Redis
) -> AsyncIterator[tuple[Store, Store]]:
    redis_store = await RedisStore.connect(redis_url, prefix=prefix)
    yield MemoryStore(prefix=prefix), redis_store
    await redis_store.close()


async def apply(store: Store, op: tuple[Any, ...]) -> object:
    name, now = op[0], op[1]
    if name == "add":
        return await store.run(ADD, "w", op[2])
    if name == "forget":
        return await store.delete(op[2])
    if name == "rate":
        return await store.rate_acquire("r", rate=2.0, burst=2, now=now)
    mark_key, with_seat, with_rate = op[2:]
    return await store.claim(
        Write(key=mark_key, value=mark_key.encode(), ttl_s=3600),
        step=seat(12) if with_seat else None,
        rate=RateLimit(key="r", rate=2.0, burst=2, now=now) if with_rate else None,
        also=[Write(key="after:" + mark_key, value=b"x", ttl_s=3600)],
    )


def history(rng: random.Random, length: int) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    now = NOW
    for _ in range(length):
        now += rng.choice([0.0, 0.0, 0.1, 0.3, 1.0, 61.0])
        pick = rng.random()
        marks = [f"m{i}" for i in range(6)]
        if pick < 0.25:
            ops.append(("add", now, rng.randint(-4, 1)))
        elif pick < 0.35:
            ops.append(("forget", now, rng.choice(marks)))
        elif pick < 0.45:
            ops.append(("rate", now))
        else:
            ops.append(("claim", now, rng.choice(marks), rng.random() < 0.8, rng.random() < 0.7))
    return ops


@pytest.mark.parametrize("seed", range(12))
async def test_both_backends_claim_alike(both: tuple[Store, Store], seed: int) -> None:
    memory, redis_store = both
    # Each seed is a test of its own: a new memory store, a new Redis prefix.
    for step, op in enumerate(history(random.Random(seed), 150)):
        expected = await apply(memory, op)
        got = await apply(redis_store, op)
        if isinstance(expected, Claim) and isinstance(got, Claim):
            assert got.wait_s == pytest.approx(expected.wait_s, rel=1e-9, abs=1e-9), (seed, step)
            got = Claim(ok=got.ok, known=got.known, step=got.step)
            expected = Claim(ok=expected.ok, known=expected.known, step=expected.step)
        elif isinstance(expected, float):
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-9), (seed, step, op)
            continue
        assert got == expected, (seed, step, op)
        for key in ("m0", "after:m0"):
            assert await redis_store.get(key) == await memory.get(key), (seed, step, key)
