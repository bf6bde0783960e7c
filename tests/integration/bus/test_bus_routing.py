"""Topic routing, unroutable publishes and topology declaration, on both backends.

The table runs against the real broker too, so the memory twin's matching provably agrees
with RabbitMQ's.
"""

from __future__ import annotations

import pytest

from libs.common.bus import BusError, PublishError, Unroutable, publish_fact
from libs.common.schemas import SendText
from libs.common.topology import COMMANDS, CORE_QUEUES, EVENTS, QueueSpec
from tests.support.bus_harness import Harness, text, wait_depth

# (binding pattern, routing key, routed?)
TOPIC_TABLE = [
    ("a.#", "a", True),
    ("a.#", "a.b", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b.a", False),
    ("#.b", "b", True),
    ("#.b", "a.b", True),
    ("#.b", "a.b.c", False),
    ("#", "", True),
    ("#", "a.b.c", True),
    ("*", "", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("a.*.c", "a.c", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a..c", True),
    ("a.*.c", "a.b.b.c", False),
    ("a.*", "a.", True),
    ("a.*", "a", False),
    ("*.*", "a", False),
    ("*.#", "a", True),
    ("*.#", "", False),
    ("#.#", "", True),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.#.b", "a.b", True),
    ("#.a.#", "a", True),
    ("#.a.#", "b.a.b", True),
    ("#.a.#", "b.b", False),
    ("msg.#", "msg.text", True),
    ("msg.#", "msgx.text", False),
    ("event.user_enter_tempsession", "event.user_enter_tempsession", True),
    ("event.user_enter_tempsession", "event.user_enter_tempsession.x", False),
    ("", "", True),
    ("", "a", False),
]


@pytest.mark.parametrize(("pattern", "key", "routed"), TOPIC_TABLE)
async def test_topic_matching_agrees_with_the_broker(
    harness: Harness, ns: str, pattern: str, key: str, routed: bool
) -> None:
    bus = await harness.bus()
    exchange = f"{ns}.topic"
    await bus.declare([QueueSpec(name=f"{ns}.q", exchange=exchange, bindings=(pattern,))])
    if routed:
        await bus.publish(text(), routing_key=key, exchange=exchange)
        await wait_depth(harness, f"{ns}.q", 1)
    else:
        with pytest.raises(PublishError, match="unroutable"):
            await bus.publish(text(), routing_key=key, exchange=exchange)
        await wait_depth(harness, f"{ns}.q", 0)


async def test_a_queue_bound_twice_gets_one_copy(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    spec = QueueSpec(name=f"{ns}.q", exchange=EVENTS, bindings=(f"{ns}.#", f"{ns}.*"))
    await bus.declare([spec])
    await bus.publish(text(), routing_key=f"{ns}.x")
    await wait_depth(harness, spec.name, 1)


async def test_unroutable_publish_raises_and_the_bus_goes_on(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    spec = QueueSpec(name=f"{ns}.q", exchange=EVENTS, bindings=(f"{ns}.ok",))
    await bus.declare([spec])
    with pytest.raises(Unroutable, match="unroutable"):
        await bus.publish(text(), routing_key=f"{ns}.nobody")
    with pytest.raises(PublishError) as missing_exchange:
        await bus.publish(text(), routing_key=f"{ns}.ok", exchange=f"{ns}.no-such-exchange")
    assert not isinstance(missing_exchange.value, Unroutable)
    # A publish to a missing exchange costs RabbitMQ the channel; the next publish still works.
    await bus.publish(text(), routing_key=f"{ns}.ok")
    await wait_depth(harness, spec.name, 1)


async def test_a_fact_nobody_listens_to_is_not_an_error(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    spec = QueueSpec(name=f"{ns}.q", exchange=EVENTS, bindings=(f"{ns}.heard",))
    await bus.declare([spec])
    assert await publish_fact(bus, text(), routing_key=f"{ns}.unheard") is False
    assert await publish_fact(bus, text(), routing_key=f"{ns}.heard") is True
    await wait_depth(harness, spec.name, 1)


async def test_core_topology_routes_every_core_key(harness: Harness) -> None:
    bus = await harness.bus()
    await bus.declare()
    await bus.declare()  # idempotent
    await bus.publish(text())  # msg.text → kf.events
    await bus.publish(
        SendText(appid="wx1", openid="o1", correlation_id="c1", content="hi")
    )  # send.text → kf.commands
    for name in ("wxkf.router.events", "wxkf.sender.windows", "wxkf.sender.commands"):
        await wait_depth(harness, name, 1)
    assert {s.exchange for s in CORE_QUEUES} == {EVENTS, COMMANDS}


async def test_redeclaring_is_idempotent_and_a_conflict_is_a_clear_error(
    harness: Harness, ns: str
) -> None:
    bus = await harness.bus()
    spec = QueueSpec(
        name=f"{ns}.q", exchange=EVENTS, bindings=(f"{ns}.#",), max_attempts=4, retry_base_s=0.1
    )
    await bus.declare([spec])
    await bus.publish(text(), routing_key=f"{ns}.x")
    await bus.declare([spec])
    await wait_depth(harness, spec.name, 1)  # redeclaring kept the message
    changed = QueueSpec(
        name=spec.name,
        exchange=EVENTS,
        bindings=spec.bindings,
        delivery_limit=spec.delivery_limit + 1,
    )
    with pytest.raises(BusError, match=spec.name):
        await bus.declare([changed])
    # The failed declaration leaves the bus usable.
    await bus.declare([spec])
    await bus.publish(text(), routing_key=f"{ns}.y")
    await wait_depth(harness, spec.name, 2)


async def test_a_bad_queue_spec_is_a_clear_error(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    await bus.declare([])
    with pytest.raises(BusError):
        await bus.declare([QueueSpec(name=f"{ns}.q", exchange="kf.dead", bindings=("x",))])
    with pytest.raises(BusError, match="binding"):
        await bus.declare([QueueSpec(name=f"{ns}.q", exchange=EVENTS, bindings=())])
