"""Request and reply on both backends: within the deadline, past it, and many at once."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.bus import PublishError
from libs.common.schemas import AnyMessage, DecisionReply, decode_reply
from tests.support.bus_harness import Delivery, Harness, Recorder, text, work_spec
from tests.support.metrics import sample
from tests.support.waiting import eventually


def answer_for(msg: AnyMessage) -> DecisionReply:
    return DecisionReply(event_id=msg.id, transfer=True, rule="r-" + msg.id[:6])


async def answer(msg: AnyMessage, delivery: Delivery) -> None:
    await delivery.reply(answer_for(msg))


async def test_a_reply_within_the_deadline_is_returned(harness: Harness, ns: str) -> None:
    responder, requester = await harness.bus(), await harness.bus()
    spec = work_spec(ns)
    recorder = Recorder(answer)
    await responder.consume(spec, recorder)
    msg = text("transfer me")
    body = await requester.request(msg, timeout=10, routing_key=f"{ns}.msg.text")
    assert body is not None
    assert decode_reply(body) == answer_for(msg)
    (seen,) = recorder.seen
    assert seen.delivery.reply_to
    assert seen.delivery.correlation_id == msg.correlation_id


async def test_no_reply_within_the_deadline_gives_none_and_the_late_reply_is_counted(
    harness: Harness, ns: str
) -> None:
    responder, requester = await harness.bus(), await harness.bus()
    spec = work_spec(ns)
    release = asyncio.Event()
    replied = asyncio.Event()

    async def answer_late(msg: AnyMessage, delivery: Delivery) -> None:
        await release.wait()
        await delivery.reply(answer_for(msg))  # nobody waits any more: no error either
        replied.set()

    await responder.consume(spec, Recorder(answer_late))
    late_before = sample("wxkf_bus_rpc_late_replies_total")
    timeouts_before = sample("wxkf_bus_rpc_timeouts_total")
    assert await requester.request(text(), timeout=0.2, routing_key=f"{ns}.msg.text") is None
    assert sample("wxkf_bus_rpc_timeouts_total") == timeouts_before + 1
    release.set()
    async with asyncio.timeout(20):
        await replied.wait()
    await eventually(
        lambda: sample("wxkf_bus_rpc_late_replies_total"),
        lambda value: value >= late_before + 1,
        what="the late reply counted",
    )
    # The requester still works afterwards.
    release_now = text("second")
    assert await requester.request(release_now, timeout=10, routing_key=f"{ns}.msg.text")


async def test_concurrent_requests_sharing_a_correlation_id_get_their_own_replies(
    harness: Harness, ns: str
) -> None:
    responder, requester = await harness.bus(), await harness.bus()
    spec = work_spec(ns)
    await responder.consume(spec, Recorder(answer), prefetch=16)
    # One conversation turn may ask more than once; ids tell the replies apart.
    asks = [text(f"q{i}", correlation_id="one-conversation") for i in range(12)]
    bodies = await asyncio.gather(
        *(requester.request(m, timeout=10, routing_key=f"{ns}.msg.text") for m in asks)
    )
    assert [decode_reply(b).event_id if b else None for b in bodies] == [m.id for m in asks]


async def test_reply_without_a_reply_address_is_a_no_op(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    spec = work_spec(ns)
    recorder = Recorder(answer)
    await bus.consume(spec, recorder)
    await bus.publish(text(), routing_key=f"{ns}.msg.text")
    (seen,) = await recorder.wait_for(1)
    assert seen.delivery.reply_to is None
    await bus.stop_consuming()
    assert sample("wxkf_bus_deliveries_total", queue=spec.name, outcome="ack") == 1


async def test_an_unroutable_request_raises_instead_of_waiting(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    await bus.declare([work_spec(ns)])
    with pytest.raises(PublishError, match="unroutable"):
        await bus.request(text(), timeout=10, routing_key=f"{ns}-nobody.msg.text")
