"""The pending/done protocol on the memory store (the Redis run is in the integration suite)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY

from libs.common.bus import BusError, PublishError
from libs.common.store import Claim, RateLimit, StepCall, StoreError, Write
from libs.common.store.memory import MemoryStore
from services.ingress import dedupe
from services.ingress import spool as spool_module
from services.ingress.dedupe import Done, settle
from services.ingress.errors import SpoolFull, StillPending, StoreUnavailable
from tests.support.slow_store import SlowDoneStore

KEY = dedupe.key_for("event-1")
TRANSFER = Done(transfer=True)


def _settle(
    store: MemoryStore,
    work: Worker,
    *,
    wait_s: float = 5.0,
    recorder: dedupe.Recorder | None = None,
    spool: Spool | None = None,
    born: float = 1_000.0,
    arrived: float = 1_000.0,
) -> asyncio.Future[dedupe.Settled]:
    return asyncio.ensure_future(
        settle(
            store,
            dedupe.Push(key=KEY, born=born, arrived=arrived),
            work,
            spool,
            pending_ttl_s=30.0,
            done_ttl_s=600.0,
            wait_s=wait_s,
            recorder=dedupe.Recorder() if recorder is None else recorder,
        )
    )


class Worker:
    """Counts how often the event was published; can be held open or made to fail."""

    def __init__(self, answer: Done = TRANSFER) -> None:
        self.answer = answer
        self.calls = 0
        self.repeats: list[bool] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.fail: BaseException | None = None

    async def __call__(self, repeat: bool) -> Done:
        self.calls += 1
        self.repeats.append(repeat)
        self.started.set()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return self.answer


class Spool:
    """Takes what the broker did not; can be full or down."""

    def __init__(self, *, full: bool = False, down: bool = False) -> None:
        self.kept: list[bool] = []
        self.full = full
        self.down = down

    async def __call__(self, repeat: bool) -> bool:
        if self.down:
            raise StoreError("spool: connection refused")
        if self.full:
            return False
        self.kept.append(repeat)
        return True


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(prefix="test:")


async def test_first_attempt_publishes_and_records_the_answer(store: MemoryStore) -> None:
    work = Worker()
    recorder = dedupe.Recorder()
    settled = await _settle(store, work, recorder=recorder)
    assert settled.first
    assert settled.answer == Done(transfer=True)
    assert work.calls == 1
    await recorder.drain()
    raw = await store.get(KEY)
    assert raw is not None
    assert b"done" in raw


async def test_a_retry_after_done_gets_the_same_answer_without_publishing(
    store: MemoryStore,
) -> None:
    first, retry = Worker(Done(transfer=True)), Worker(Done(transfer=False))
    recorder = dedupe.Recorder()
    await _settle(store, first, recorder=recorder)
    await recorder.drain()
    settled = await _settle(store, retry)
    assert not settled.first
    assert settled.answer == Done(transfer=True)
    assert retry.calls == 0


async def test_a_failed_publish_releases_the_key_for_the_next_attempt(store: MemoryStore) -> None:
    failing = Worker()
    failing.fail = PublishError("broker said no")
    with pytest.raises(PublishError):
        await _settle(store, failing)
    assert await store.get(KEY) is None
    work = Worker()
    settled = await _settle(store, work)
    assert settled.first
    assert work.calls == 1


async def test_a_cancelled_attempt_releases_the_key(store: MemoryStore) -> None:
    work = Worker()
    work.release.clear()
    task = _settle(store, work)
    await work.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.get(KEY) is None


async def test_overlapping_attempts_publish_once_and_share_the_answer(store: MemoryStore) -> None:
    first, second = Worker(Done(transfer=True)), Worker()
    first.release.clear()
    a = _settle(store, first)
    await first.started.wait()
    hits = dedupe_hits("pending")
    b = _settle(store, second)
    # b must be polling, not publishing, while a holds the key.
    await _until(lambda: dedupe_hits("pending") > hits or b.done())
    assert not b.done()
    first.release.set()
    settled_a, settled_b = await asyncio.gather(a, b)
    assert settled_a.first
    assert not settled_b.first
    assert settled_b.answer == Done(transfer=True)
    assert (first.calls, second.calls) == (1, 0)


async def test_a_waiting_retry_takes_over_when_the_first_attempt_fails(store: MemoryStore) -> None:
    first, second = Worker(), Worker(Done(transfer=False))
    first.release.clear()
    first.fail = RuntimeError("nacked")
    a = _settle(store, first)
    await first.started.wait()
    b = _settle(store, second)
    await asyncio.sleep(0)
    first.release.set()
    with pytest.raises(RuntimeError):
        await a
    settled = await b
    assert settled.first
    assert settled.answer == Done(transfer=False)
    assert second.calls == 1


async def test_still_pending_at_the_deadline_is_unavailable(store: MemoryStore) -> None:
    holder, retry = Worker(), Worker()
    holder.release.clear()
    a = _settle(store, holder)
    await holder.started.wait()
    with pytest.raises(StillPending):
        await _settle(store, retry, wait_s=0.05)
    assert retry.calls == 0
    holder.release.set()
    await a


async def test_unreadable_state_is_not_guessed(store: MemoryStore) -> None:
    await store.set(KEY, b"something else", ttl_s=60)
    work = Worker()
    with pytest.raises(StoreUnavailable):
        await _settle(store, work)
    assert work.calls == 0


class BrokenStore(MemoryStore):
    """The memory store with chosen operations failing as a down Redis would."""

    def __init__(self, *failing: str) -> None:
        super().__init__(prefix="broken:")
        self.failing = set(failing)

    def _check(self, op: str) -> None:
        if op in self.failing:
            raise StoreError(f"{op}: connection refused")

    async def claim(
        self,
        mark: Write,
        *,
        step: StepCall[Any] | None = None,
        rate: RateLimit | None = None,
        also: Sequence[Write] = (),
        flag: str | None = None,
    ) -> Claim[Any]:
        self._check("claim")
        return await super().claim(mark, step=step, rate=rate, also=also, flag=flag)

    async def set_many(self, writes: Sequence[Write]) -> None:
        self._check("set_many")
        await super().set_many(writes)

    async def delete_if_equals(self, key: str, value: bytes) -> bool:
        self._check("delete_if_equals")
        return await super().delete_if_equals(key, value)


async def test_with_the_store_down_the_event_is_published_without_a_claim() -> None:
    work = Worker(Done(transfer=True))
    settled = await _settle(BrokenStore("claim"), work, spool=Spool())
    assert settled.path == "unclaimed"
    assert settled.answer == Done(transfer=True)
    assert work.repeats == [False]


async def test_with_the_store_and_the_broker_down_the_push_is_not_settled() -> None:
    work = Worker()
    work.fail = PublishError("broker down")
    spool = Spool()
    with pytest.raises(PublishError):
        await _settle(BrokenStore("claim"), work, spool=spool)
    assert spool.kept == []


async def test_an_event_the_broker_did_not_confirm_is_kept_in_the_spool(
    store: MemoryStore,
) -> None:
    work = Worker()
    work.fail = PublishError("not confirmed within 1.5s")
    spool = Spool()
    recorder = dedupe.Recorder()
    settled = await _settle(store, work, spool=spool, recorder=recorder)
    assert settled.path == "spooled"
    assert settled.answer == Done(transfer=False, decided=False, spooled=True)
    # The copy that timed out may reach the bus yet: the spooled one may repeat it.
    assert spool.kept == [True]
    await recorder.drain()
    retry = Worker()
    again = await _settle(store, retry, spool=spool)
    assert (again.path, again.answer.spooled, retry.calls) == ("duplicate", True, 0)


async def test_while_the_spool_holds_events_a_new_one_joins_it_unpublished(
    store: MemoryStore,
) -> None:
    await store.stream_append(spool_module.STREAM, b"{}", flag=spool_module.FLAG, limit=10)
    work, spool = Worker(), Spool()
    settled = await _settle(store, work, spool=spool)
    assert settled.path == "spooled"
    assert (work.calls, spool.kept) == (0, [False])


@pytest.mark.parametrize(
    ("spool", "error"), [(Spool(full=True), SpoolFull), (Spool(down=True), BusError)]
)
async def test_an_event_neither_the_broker_nor_the_spool_took_releases_its_key(
    store: MemoryStore, spool: Spool, error: type[Exception]
) -> None:
    work = Worker()
    work.fail = PublishError("broker down")
    with pytest.raises(error):
        await _settle(store, work, spool=spool)
    assert await store.get(KEY) is None


@pytest.mark.parametrize(
    ("made_s_ago", "late_s", "repeat"),
    [
        (60, 10, True),  # a resend of a push made before the store forgot: it may repeat
        (60, 0.1, False),  # a first attempt, however old: nothing was published before it
        (-5, 10, False),  # made after the store's memory began: the claim is the proof
    ],
)
async def test_a_resend_of_a_push_the_store_may_have_forgotten_is_a_possible_repeat(
    store: MemoryStore, made_s_ago: float, late_s: float, repeat: bool
) -> None:
    store.lose_everything()
    began = store._space.since
    work = Worker(Done(transfer=False))
    born = began - made_s_ago
    await _settle(store, work, born=born, arrived=born + late_s)
    assert work.repeats == [repeat]


async def test_store_down_after_the_confirm_still_answers() -> None:
    store = BrokenStore("set_many")
    work = Worker(Done(transfer=True))
    before = store_errors("done")
    recorder = dedupe.Recorder()
    settled = await _settle(store, work, recorder=recorder)
    assert settled.first
    assert settled.answer.transfer
    await recorder.drain()
    # The answer was not recorded (the failure was met, and counted), yet it is given.
    assert store_errors("done") == before + 1


async def test_release_failure_keeps_the_publish_error() -> None:
    store = BrokenStore("delete_if_equals")
    work = Worker()
    work.fail = PublishError("nacked")
    with pytest.raises(PublishError):
        await _settle(store, work)


def store_errors(op: str) -> float:
    value = REGISTRY.get_sample_value("wxkf_ingress_store_errors_total", {"op": op})
    return value or 0.0


def dedupe_hits(state: str) -> float:
    value = REGISTRY.get_sample_value("wxkf_ingress_dedupe_hits_total", {"state": state})
    return value or 0.0


async def _until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_claim_left_by_a_dead_attempt_is_taken_over_after_its_ttl() -> None:
    now = [1000.0]
    store = MemoryStore(prefix="test:", clock=lambda: now[0])
    # An attempt claimed the push, then its process died: nobody will finish or release it.
    assert await store.set_if_absent(KEY, b'{"s":"pending","owner":"gone"}', ttl_s=8.0)
    retry = Worker()
    with pytest.raises(StillPending):
        await _settle(store, retry, wait_s=0.02)
    assert retry.calls == 0
    now[0] += 8.5
    settled = await _settle(store, retry, wait_s=0.02)
    assert settled.first
    assert retry.calls == 1


async def test_the_answer_does_not_wait_for_done_to_be_written() -> None:
    store = SlowDoneStore()
    recorder = dedupe.Recorder()
    first = Worker(Done(transfer=True))
    # Bounded only so that an answer waiting for the write fails instead of hanging.
    async with asyncio.timeout(30):
        settled = await _settle(store, first, recorder=recorder)
    assert settled.first
    assert settled.answer == Done(transfer=True)
    await store.writing.wait()
    assert len(recorder) == 1
    assert b"pending" in (await store.get(KEY) or b"")


async def test_a_retry_while_done_is_on_its_way_polls_and_gets_the_same_answer() -> None:
    store = SlowDoneStore()
    recorder = dedupe.Recorder()
    first, retry = Worker(Done(transfer=True)), Worker(Done(transfer=False))
    await _settle(store, first, recorder=recorder)
    hits = dedupe_hits("pending")
    b = _settle(store, retry)
    await _until(lambda: dedupe_hits("pending") > hits or b.done())
    assert not b.done()
    store.land.set()
    settled = await b
    assert not settled.first
    assert settled.answer == Done(transfer=True)
    assert (first.calls, retry.calls) == (1, 0)


async def test_drain_waits_for_the_writes_on_their_way() -> None:
    store = SlowDoneStore()
    recorder = dedupe.Recorder()
    await _settle(store, Worker(Done(transfer=True)), recorder=recorder)
    drained = asyncio.ensure_future(recorder.drain())
    await store.writing.wait()
    await asyncio.sleep(0)
    assert not drained.done()
    store.land.set()
    await drained
    assert len(recorder) == 0
    assert b"done" in (await store.get(KEY) or b"")
