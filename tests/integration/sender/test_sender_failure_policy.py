"""Failures under the default policy (``ambiguous_retry`` unset) and per message type.

Not delivered for certain (-1, 45009, HTTP 5xx, a refused connection): retried through the
bus whatever the policy, counted as transient retries, never as ambiguous. Maybe delivered
(a read timeout, a connection dropped after WeChat accepted): at most once unless the type
is listed in ``ambiguous_retry``. The dropped-connection case under the default policy is
``test_sender_retries.py::test_ambiguous_failure_given_up_by_default_never_sends_twice``;
the read timeout is here.
"""

from __future__ import annotations

import socket

from libs.common.schemas import Failed, SendImage, Sent
from services.simulator.api import SEND
from services.simulator.app import create_app as create_sim
from services.simulator.app import running
from services.simulator.config import DEMO_APPID
from services.simulator.faults import Fault
from tests.integration.sender.conftest import Rig, ambiguous, retries
from tests.support.metrics import sample
from tests.support.waiting import eventually

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 128
TRANSIENT = ("system_busy", "daily_quota_reached", "unavailable")


def counters() -> dict[str, float]:
    return {
        **{reason: retries(reason) for reason in (*TRANSIENT, "ambiguous")},
        "ambiguous_text_retry": ambiguous("text", "retry"),
        "ambiguous_text_give_up": ambiguous("text", "give_up"),
        "ambiguous_image_retry": ambiguous("image", "retry"),
        "ambiguous_image_give_up": ambiguous("image", "give_up"),
    }


def grown(before: dict[str, float]) -> dict[str, float]:
    """What grew since ``before``, by how much."""
    after = counters()
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_transient_errors_are_retried_by_default_and_delivered_once_in_order(
    rig: Rig,
) -> None:
    # Backoff up to 3.2 s: the later replies wait (and spend attempts) while the first retries.
    await rig.start_sender()
    assert rig.settings().ambiguous_retried == frozenset()  # the default policy
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, Fault(errcode=-1), Fault(errcode=45009), Fault(status=503))
    commands = rig.texts(user, ["first", "second", "third"])
    before = counters()
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    assert all(isinstance(outcomes[c.id], Sent) for c in commands)
    assert rig.received(user) == ["first", "second", "third"]  # each once, in order
    # The first took four deliveries (three refusals, then the send); each refusal was a
    # transient retry of its own reason, and nothing counted as ambiguous.
    assert outcomes[commands[0].id].attempts == 4
    assert grown(before) == {"system_busy": 1, "daily_quota_reached": 1, "unavailable": 1}
    assert rig.sim.stats.total(SEND, "http_503") == 1
    assert rig.sim.stats.total(SEND, 0) == 3


async def test_a_refused_connection_is_retried_by_default_and_delivered_once(rig: Rig) -> None:
    # WeChat behind an address of its own, which the test takes away and brings back.
    port = free_port()
    await rig.start_sender(wechat_api_base=f"http://127.0.0.1:{port}")
    user = rig.openid()
    await rig.user_message(user)
    warmup = rig.texts(user, ["before"])
    async with running(create_sim(state=rig.sim), port=port):
        await rig.send(*warmup)  # the token fetched, while WeChat can be reached
        assert isinstance((await rig.settled(warmup))[warmup[0].id], Sent)
    refused = sample(
        "wxkf_wechat_api_calls_total", service="sender", api="send", result="connection"
    )
    before = counters()
    commands = rig.texts(user, ["during", "after"])
    await rig.send(*commands)
    # Nothing listens on the port: the connection is refused, so surely nothing was sent.
    await eventually(lambda: retries("unavailable"), lambda n: n > before["unavailable"])
    async with running(create_sim(state=rig.sim), port=port):
        outcomes = await rig.settled(commands)
    assert all(isinstance(outcomes[c.id], Sent) for c in commands)
    assert outcomes[commands[0].id].attempts > 1
    assert rig.received(user) == ["before", "during", "after"]
    growth = grown(before)
    assert growth.get("unavailable", 0) >= 1
    assert set(growth) == {"unavailable"}  # transient only: no ambiguous retry or give-up
    assert (
        sample("wxkf_wechat_api_calls_total", service="sender", api="send", result="connection")
        >= refused + 1
    )


async def test_a_read_timeout_is_given_up_by_default_and_not_sent_again(rig: Rig) -> None:
    # WeChat delivers at once but answers after our timeout: it may have delivered (it did).
    await rig.start_sender(wechat_timeout_s=0.3)
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, Fault(latency_ms=900))
    commands = rig.texts(user, ["maybe delivered", "next"])
    before = counters()
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    first = outcomes[commands[0].id]
    assert isinstance(first, Failed)
    assert first.errcode is None
    assert first.errmsg.startswith("ambiguous:")
    assert "timeout" in first.errmsg
    assert first.attempts == 1
    assert first.routing_key() == "outbound.failed.text"
    # One fact for it, one call, and no retry of any kind: the user got it exactly once.
    assert [f.command_id for f in rig.facts].count(commands[0].id) == 1
    assert grown(before) == {"ambiguous_text_give_up": 1}
    assert rig.received(user) == ["maybe delivered", "next"]
    assert rig.sim.stats.total(SEND) == 2
    # A failure counts as done: the next of its decision was sent after it.
    assert isinstance(outcomes[commands[1].id], Sent)


async def test_the_ambiguous_policy_applies_only_to_the_listed_types(rig: Rig) -> None:
    # At least once for images, at most once for everything else (text included).
    await rig.start_sender(ambiguous_retry="image")
    texter, viewer = rig.openid(), rig.openid()
    await rig.user_message(texter)
    await rig.user_message(viewer)

    # A text whose call WeChat accepted but whose answer was lost: given up, not resent.
    rig.fault(SEND, Fault(accept_then_drop=True))
    [text] = rig.texts(texter, ["maybe delivered"])
    before = counters()
    await rig.send(text)
    text_fact = (await rig.settled([text]))[text.id]
    assert isinstance(text_fact, Failed)
    assert text_fact.errcode is None
    assert text_fact.errmsg.startswith("ambiguous:")
    assert text_fact.attempts == 1
    assert grown(before) == {"ambiguous_text_give_up": 1}
    assert rig.received(texter) == ["maybe delivered"]
    assert rig.sim.stats.total(SEND, "dropped") == 1

    # The same failure of an image: retried, and delivered (here twice, the price of it).
    media_id = rig.sim.upload_media(PNG).media_id
    rig.fault(SEND, Fault(accept_then_drop=True))
    image = SendImage(
        appid=DEMO_APPID, openid=viewer, correlation_id="c-image", cause_id="", media_id=media_id
    )
    before = counters()
    await rig.send(image)
    image_fact = (await rig.settled([image]))[image.id]
    assert isinstance(image_fact, Sent)
    assert image_fact.msgtype == "image"
    assert image_fact.attempts == 2
    assert grown(before) == {"ambiguous": 1, "ambiguous_image_retry": 1}
    assert rig.received(viewer) == ["image", "image"]
    assert rig.sim.stats.total(SEND, "dropped") == 2
