"""How ``memory://`` buses share a broker, and URL handling (libs/common/bus/__init__.py)."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.bus import DeadLetter, connect
from libs.common.bus.admin import describe
from libs.common.bus.amqp import safe_url
from libs.common.bus.memory import MemoryBus
from libs.common.schemas import AnyMessage, TextReceived
from libs.common.topology import EVENTS, QueueSpec

SPEC = QueueSpec(name="shared.q", exchange=EVENTS, bindings=("shared.#",))


def text() -> TextReceived:
    return TextReceived(
        appid="wx1", openid="o1", correlation_id="c", to_user="gh", create_time=1, msg_id=1,
        content="hi",
    )  # fmt: skip


async def test_the_same_url_shares_one_broker_and_another_url_does_not() -> None:
    a = await connect("memory://sharing-test")
    b = await connect("memory://sharing-test")
    other = await connect("memory://sharing-test-other")
    assert isinstance(a, MemoryBus)
    assert isinstance(b, MemoryBus)
    assert isinstance(other, MemoryBus)
    assert a.broker is b.broker
    assert other.broker is not a.broker
    assert MemoryBus.fresh().broker is not a.broker


async def test_one_client_stopping_or_closing_leaves_the_others_consuming() -> None:
    broker_owner = MemoryBus.fresh()
    router, sender = broker_owner.client(), broker_owner.client()
    got: list[str] = []

    async def handler(msg: AnyMessage, delivery: object) -> None:
        got.append(msg.id)

    await sender.consume(SPEC, handler)
    await router.consume(QueueSpec(name="other.q", exchange=EVENTS, bindings=("x",)), handler)
    await router.stop_consuming()
    await router.close()
    msg = text()
    await broker_owner.publish(msg, routing_key="shared.k")
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0)
    assert got == [msg.id]


async def test_an_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unsupported bus URL scheme in 'kafka'"):
        await connect("kafka://broker")


def test_urls_in_messages_hide_the_password() -> None:
    assert safe_url("amqp://u:secret@h:5672/v") == "amqp://u:***@h:5672/v"
    assert safe_url("amqp://h/v") == "amqp://h/v"


def test_a_dead_letter_line_is_one_line_and_bounded() -> None:
    letter = DeadLetter(
        queue="q", reason="rejected: no", attempts=2, routing_key="msg.text",
        body=("第一行\n\tsecond" + "x" * 500).encode(),
    )  # fmt: skip
    line = describe(letter)
    assert "\n" not in line
    key, reason, attempts, preview = line.split("\t")
    assert (key, reason, attempts) == ("msg.text", "rejected: no", "attempts=2")
    assert preview.startswith("第一行\\n\\tsecond")
    assert preview.endswith("…")


async def test_memory_takes_the_amqp_options_and_names_unknown_ones() -> None:
    bus = await connect("memory://options-test", publish_timeout_s=1.0, reconnect_interval_s=0.5)
    await bus.ping()
    with pytest.raises(TypeError, match="publish_timout_s"):
        await connect("memory://options-test", publish_timout_s=1.0)
