"""What an ``outbound.sent`` fact says: WeChat's answer time (``latency_ms``) and how many
deliveries of the command it took (``attempts``)."""

from __future__ import annotations

from libs.common.schemas import Sent
from services.simulator.api import SEND
from services.simulator.faults import Fault
from tests.integration.sender.conftest import FAST, HandledBy, Rig

SLOW_MS = 250.0


async def test_a_sent_fact_carries_wechats_answer_time_in_ms(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, Fault(latency_ms=SLOW_MS))  # delivered at once, answered 250 ms later
    slow = rig.texts(user, ["slow answer"])
    await rig.send(*slow)
    slow_fact = (await rig.settled(slow))[slow[0].id]
    fast = rig.texts(user, ["quick answer"])
    await rig.send(*fast)
    fast_fact = (await rig.settled(fast))[fast[0].id]
    assert isinstance(slow_fact, Sent)
    assert isinstance(fast_fact, Sent)
    assert (slow_fact.attempts, fast_fact.attempts) == (1, 1)
    # Milliseconds (not seconds, not microseconds), and the time of that one call: a call
    # answered after the 1 s timeout would have failed.
    assert SLOW_MS <= slow_fact.latency_ms < FAST["wechat_timeout_s"] * 1000
    assert 0 < fast_fact.latency_ms < SLOW_MS
    assert rig.received(user) == ["slow answer", "quick answer"]


async def test_a_first_time_success_took_one_attempt(rig: Rig, handled_by: HandledBy) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    [cmd] = rig.texts(user, ["at once"])
    await rig.send(cmd)
    fact = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(fact, Sent)
    assert fact.attempts == handled_by.count(cmd) == 1
    assert rig.sim.stats.total(SEND) == 1


async def test_a_send_after_transient_retries_counts_every_delivery(
    rig: Rig, handled_by: HandledBy
) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    # Two refusals, then a success answered late: three deliveries of the command.
    rig.fault(SEND, Fault(errcode=-1), Fault(errcode=45009), Fault(latency_ms=SLOW_MS))
    [cmd] = rig.texts(user, ["third time lucky"])
    await rig.send(cmd)
    fact = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(fact, Sent)
    assert fact.attempts == handled_by.count(cmd) == 3
    assert rig.sim.stats.total(SEND) == 3
    # The latency is that of the call WeChat accepted, whatever the retries before it took.
    assert SLOW_MS <= fact.latency_ms < FAST["wechat_timeout_s"] * 1000
    assert rig.received(user) == ["third time lucky"]
