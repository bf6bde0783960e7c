"""The memory broker's routing and queue depth (libs/common/bus/memory.py)."""

from __future__ import annotations

import pytest

from libs.common.bus import Unroutable
from libs.common.bus.memory import MemoryBus
from libs.common.schemas import TextReceived
from libs.common.topology import EVENTS, QueueSpec


def text() -> TextReceived:
    return TextReceived(
        appid="wx1", openid="o1", correlation_id="c", to_user="gh", create_time=1, msg_id=1,
        content="hi",
    )  # fmt: skip


async def test_messages_nobody_consumes_wait_in_their_queue() -> None:
    bus = MemoryBus.fresh()
    await bus.declare([QueueSpec(name="depth.q", exchange=EVENTS, bindings=("msg.#",))])
    assert bus.broker.depth("depth.q") == 0
    for _ in range(3):
        await bus.publish(text())
    assert bus.broker.depth("depth.q") == 3
    assert bus.broker.depth("never.declared") == 0


async def test_a_binding_made_after_a_publish_routes_the_next_one() -> None:
    bus = MemoryBus.fresh()
    await bus.declare([QueueSpec(name="first.q", exchange=EVENTS, bindings=("other.#",))])
    with pytest.raises(Unroutable):
        await bus.publish(text())
    await bus.declare([QueueSpec(name="late.q", exchange=EVENTS, bindings=("msg.text",))])
    await bus.publish(text())
    await bus.declare([QueueSpec(name="later.q", exchange=EVENTS, bindings=("msg.*",))])
    await bus.publish(text())
    assert (bus.broker.depth("first.q"), bus.broker.depth("late.q")) == (0, 2)
    assert bus.broker.depth("later.q") == 1
