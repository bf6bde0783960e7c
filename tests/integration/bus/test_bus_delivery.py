"""Consuming on both backends: acks, redelivery, retries with backoff, dead letters, poison
messages and a graceful stop."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.bus import ATTEMPT_HEADER, ROUTING_KEY_HEADER, BusError, PublishError
from libs.common.bus.outcomes import Reject, Retry
from libs.common.schemas import AnyMessage, TextReceived, decode
from tests.support.bus_harness import (
    Delivery,
    Harness,
    Recorder,
    text,
    wait_depth,
    work_spec,
)
from tests.support.metrics import sample
from tests.support.waiting import eventually


async def test_confirmed_messages_are_delivered_once_and_acked(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    spec = work_spec(ns)
    recorder = Recorder()
    await bus.consume(spec, recorder, prefetch=8)
    sent = [text(f"m{i}") for i in range(20)]
    for msg in sent:
        await bus.publish(msg, routing_key=f"{ns}.msg.text")
    seen = await recorder.wait_for(20)
    await bus.stop_consuming()
    assert sorted(s.msg.id for s in seen) == sorted(m.id for m in sent)
    assert sorted(recorder.contents()) == sorted(m.content for m in sent)
    assert all(s.delivery.attempt == 1 and not s.delivery.final for s in seen)
    assert not any(s.delivery.redelivered for s in seen)
    # Unacked messages would be back in the queue once the consumer's channel closed.
    await wait_depth(harness, spec.name, 0)
    assert await bus.dead_letters(spec.name) == []


async def test_a_message_comes_again_when_its_consumer_dies_before_acking(
    harness: Harness, ns: str
) -> None:
    first, second = await harness.bus(), await harness.bus()
    spec = work_spec(ns)
    never = asyncio.Event()

    async def hang(msg: AnyMessage, delivery: Delivery) -> None:
        await never.wait()

    stuck = Recorder(hang)
    await first.consume(spec, stuck, prefetch=1)
    msg = text("once")
    await first.publish(msg, routing_key=f"{ns}.msg.text")
    await stuck.wait_for(1)
    await first.close()  # dies holding the message, unacked

    again = Recorder()
    await second.consume(spec, again)
    (seen,) = await again.wait_for(1)
    assert seen.msg.id == msg.id
    assert seen.delivery.redelivered
    assert seen.delivery.attempt == 1


async def test_retries_wait_with_backoff_and_count_attempts(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    spec = work_spec(ns, max_attempts=3)  # waits 0.1 s, then 0.2 s

    async def flaky(msg: AnyMessage, delivery: Delivery) -> None:
        if delivery.attempt < 3:
            raise Retry("not yet")

    recorder = Recorder(flaky)
    await bus.consume(spec, recorder)
    msg = text("flaky")
    await bus.publish(msg, routing_key=f"{ns}.msg.text")
    seen = await recorder.wait_for(3)

    assert [s.delivery.attempt for s in seen] == [1, 2, 3]
    assert [s.delivery.final for s in seen] == [False, False, True]
    assert {s.msg.id for s in seen} == {msg.id}
    assert [s.delivery.headers.get(ATTEMPT_HEADER) for s in seen[1:]] == [2, 3]
    assert {s.delivery.headers.get(ROUTING_KEY_HEADER) for s in seen[1:]} == {f"{ns}.msg.text"}
    delays = spec.retry_delays()
    # Lower bounds only: a retry may come late on a busy machine, never early.
    assert seen[1].at - seen[0].at >= delays[0] * 0.9
    assert seen[2].at - seen[1].at >= delays[1] * 0.9
    await bus.stop_consuming()
    await wait_depth(harness, spec.name, 0)
    assert await bus.dead_letters(spec.name) == []


async def test_a_requested_delay_is_rounded_up_to_a_declared_step(
    harness: Harness, ns: str
) -> None:
    bus = await harness.bus()
    spec = work_spec(ns, max_attempts=4)  # steps 0.1, 0.2, 0.4

    async def pause_once(msg: AnyMessage, delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise Retry("asked to wait", delay_s=0.3)

    recorder = Recorder(pause_once)
    await bus.consume(spec, recorder)
    await bus.publish(text(), routing_key=f"{ns}.msg.text")
    first, second = await recorder.wait_for(2)
    assert spec.retry_delay(1, 0.3) == 0.4
    assert second.at - first.at >= 0.4 * 0.9
    assert second.delivery.attempt == 2


async def test_the_last_failed_attempt_goes_to_the_dead_letter_queue(
    harness: Harness, ns: str
) -> None:
    bus = await harness.bus()
    spec = work_spec(ns, max_attempts=2)

    async def broken(msg: AnyMessage, delivery: Delivery) -> None:
        raise RuntimeError("boom")

    recorder = Recorder(broken)
    await bus.consume(spec, recorder)
    msg = text("doomed")
    await bus.publish(msg, routing_key=f"{ns}.msg.text")
    (letter,) = await eventually(lambda: bus.dead_letters(spec.name), what="a dead letter")
    assert letter.queue == spec.name
    assert letter.reason.startswith("attempts exhausted: RuntimeError: boom")
    assert letter.attempts == 2
    assert letter.routing_key == f"{ns}.msg.text"
    assert decode(letter.body) == msg
    assert [s.delivery.attempt for s in recorder.seen] == [1, 2]
    assert sample("wxkf_bus_deliveries_total", queue=spec.name, outcome="dead_letter") == 1


async def test_reject_dead_letters_at_once(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    spec = work_spec(ns, max_attempts=5)

    async def refuse(msg: AnyMessage, delivery: Delivery) -> None:
        raise Reject("not for us")

    recorder = Recorder(refuse)
    await bus.consume(spec, recorder)
    await bus.publish(text(), routing_key=f"{ns}.msg.text")
    (letter,) = await eventually(lambda: bus.dead_letters(spec.name), what="a dead letter")
    assert letter.reason == "rejected: not for us"
    assert letter.attempts == 1
    assert len(recorder.seen) == 1


BAD_BODIES = [
    pytest.param(b"not json at all", id="not-json"),
    pytest.param(b"", id="empty"),
    pytest.param(b'{"type": "no.such.type", "appid": "wx1"}', id="unknown-type"),
    pytest.param(b'{"type": "msg.text", "appid": "wx1"}', id="missing-fields"),
    pytest.param(b'{"type": "msg.text", "msg_id": "x"}', id="wrong-type"),
    pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
async def test_an_undecodable_body_is_dead_lettered_and_the_queue_goes_on(
    harness: Harness, ns: str, body: bytes
) -> None:
    bus = await harness.bus()
    spec = work_spec(ns)
    recorder = Recorder()
    await bus.consume(spec, recorder)
    await harness.publish_raw(spec.exchange, f"{ns}.msg.text", body)
    good = text("fine")
    await bus.publish(good, routing_key=f"{ns}.msg.text")
    (letter,) = await eventually(lambda: bus.dead_letters(spec.name), what="a dead letter")
    assert letter.reason.startswith("undecodable")
    assert letter.body == body
    assert letter.attempts == 1
    (seen,) = await recorder.wait_for(1)
    assert seen.msg == good
    assert sample("wxkf_bus_deliveries_total", queue=spec.name, outcome="undecodable") == 1


async def test_a_poison_message_reaches_the_dlq_at_the_delivery_limit_while_others_flow(
    harness: Harness, ns: str
) -> None:
    bus = await harness.bus()
    spec = work_spec(ns, delivery_limit=2)
    poison_deliveries = 0

    async def crash_on_poison(msg: AnyMessage, delivery: Delivery) -> None:
        nonlocal poison_deliveries
        if isinstance(msg, TextReceived) and msg.content == "poison":
            poison_deliveries += 1
            # Dies before it can ack, as a crashing worker does: no Retry, no return.
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)

    recorder = Recorder(crash_on_poison)
    await bus.consume(spec, recorder, prefetch=4)
    await bus.publish(text("poison"), routing_key=f"{ns}.msg.text")
    for i in range(5):
        await bus.publish(text(f"good{i}"), routing_key=f"{ns}.msg.text")
    (letter,) = await eventually(lambda: bus.dead_letters(spec.name), what="the poison message")
    assert letter.reason == "delivery_limit"
    assert letter.routing_key == f"{ns}.msg.text"
    await eventually(
        lambda: sorted(c for c in recorder.contents() if c.startswith("good")),
        lambda goods: goods == [f"good{i}" for i in range(5)],
        what="every good message",
    )
    # The broker's rule, matched by the memory twin: dead-lettered once its deliveries
    # exceed the limit.
    assert poison_deliveries == spec.delivery_limit + 1


async def test_stop_consuming_waits_for_handlers_in_flight_and_takes_no_more(
    harness: Harness, ns: str
) -> None:
    bus = await harness.bus()
    spec = work_spec(ns)
    started, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def slow(msg: AnyMessage, delivery: Delivery) -> None:
        started.set()
        await release.wait()
        order.append("handler finished")

    await bus.consume(spec, Recorder(slow), prefetch=1)
    await bus.publish(text("in flight"), routing_key=f"{ns}.msg.text")
    async with asyncio.timeout(20):
        await started.wait()

    async def stop() -> None:
        await bus.stop_consuming()
        order.append("stopped")

    stopper = asyncio.create_task(stop())
    done, _ = await asyncio.wait({stopper}, timeout=0.3)
    assert not done, "stop_consuming returned while a handler was still running"
    release.set()
    await stopper
    assert order == ["handler finished", "stopped"]
    # It was acked, and nothing consumes any more: a new message stays in the queue.
    await bus.publish(text("after the stop"), routing_key=f"{ns}.msg.text")
    await wait_depth(harness, spec.name, 1)


async def test_a_closed_bus_refuses_work_with_typed_errors(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    spec = work_spec(ns)
    await bus.declare([spec])
    with pytest.raises(ValueError, match="prefetch"):
        await bus.consume(spec, Recorder(), prefetch=0)
    await bus.close()
    with pytest.raises(PublishError):
        await bus.publish(text(), routing_key=f"{ns}.msg.text")
    with pytest.raises(BusError):
        await bus.ping()
    with pytest.raises(BusError):
        await bus.consume(spec, Recorder())
    with pytest.raises(BusError):
        await bus.dead_letters(spec.name)
    await bus.close()  # twice is fine


async def test_publishes_from_a_handler_are_confirmed_and_a_later_failure_retries(
    harness: Harness, ns: str
) -> None:
    bus = await harness.bus()
    work = work_spec(ns, name=f"{ns}.work", bindings=(f"{ns}.in.#",), max_attempts=2)
    out = work_spec(ns, name=f"{ns}.out", bindings=(f"{ns}.out.#",))

    async def forward_then_fail_once(msg: AnyMessage, delivery: Delivery) -> None:
        assert isinstance(msg, TextReceived)
        await bus.publish(text(f"{msg.content}/{delivery.attempt}"), routing_key=f"{ns}.out.x")
        if delivery.attempt == 1:
            raise RuntimeError("after publishing")

    forwarded = Recorder()
    await bus.consume(work, Recorder(forward_then_fail_once))
    await bus.consume(out, forwarded)
    await bus.publish(text("job"), routing_key=f"{ns}.in.x")
    await forwarded.wait_for(2)
    # At least once: the retry publishes again; consumers deduplicate by event id.
    assert sorted(forwarded.contents()) == ["job/1", "job/2"]
    await bus.stop_consuming()
    assert await bus.dead_letters(work.name) == []


async def test_a_copy_says_whether_it_may_repeat_one_handled_before(
    harness: Harness, ns: str
) -> None:
    bus = await harness.bus()
    spec = work_spec(ns, max_attempts=4)

    async def behave(msg: AnyMessage, delivery: Delivery) -> None:
        assert isinstance(msg, TextReceived)
        if msg.content == "clean" and delivery.attempt < 3:
            raise Retry("nothing done yet", nothing_done=True)
        if msg.content == "dirty" and delivery.attempt < 2:
            raise Retry("half done")

    recorder = Recorder(behave)
    await bus.consume(spec, recorder)
    await bus.publish(text("new"), routing_key=f"{ns}.msg.text")
    await bus.publish(text("again"), routing_key=f"{ns}.msg.text", repeat=True)
    await bus.publish(text("clean"), routing_key=f"{ns}.msg.text")
    await bus.publish(text("dirty"), routing_key=f"{ns}.msg.text")
    seen = await recorder.wait_for(7)
    await bus.stop_consuming()
    fresh = sorted((s.msg.content, s.delivery.attempt, s.delivery.fresh) for s in seen)
    assert fresh == [
        ("again", 1, False),
        ("clean", 1, True),
        ("clean", 2, True),
        ("clean", 3, True),
        ("dirty", 1, True),
        ("dirty", 2, False),
        ("new", 1, True),
    ]


async def test_a_retry_leaves_a_note_for_the_next_attempt_only(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    spec = work_spec(ns, max_attempts=4)

    async def behave(msg: AnyMessage, delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise Retry("claimed, then lost the answer", nothing_done=True, note="owner-1")
        if delivery.attempt == 2:
            raise Retry("again, saying nothing")

    recorder = Recorder(behave)
    await bus.consume(spec, recorder)
    await bus.publish(text("noted"), routing_key=f"{ns}.msg.text")
    seen = await recorder.wait_for(3)
    await bus.stop_consuming()
    assert [(s.delivery.attempt, s.delivery.note) for s in seen] == [
        (1, None),
        (2, "owner-1"),
        (3, None),
    ]
