"""The router as a service: the decision RPC, sessions, commands in order, redelivery."""

from __future__ import annotations

import json

import aiohttp
import msgspec
from aiohttp.test_utils import TestServer

from libs.common.schemas import (
    DecisionMade,
    SendImage,
    SendText,
    SendTyping,
    derived_id,
    now_ms,
)
from libs.common.topology import EVENTS, ROUTER_EVENTS
from libs.common.web import internal_app
from services.router import plans
from services.router.plans import Plan
from tests.support.metrics import sample
from tests.support.waiting import eventually

from .conftest import Rig


async def test_decision_rpc_answers_within_the_budget(rig: Rig) -> None:
    await rig.start_router()
    user = rig.openid()
    human = rig.text(user, "转人工")
    answer = await rig.ask(human, budget_s=5.0)
    assert answer is not None
    assert (answer.event_id, answer.transfer, answer.rule) == (human.id, True, "agent")
    fact = await rig.decided(human)
    assert (fact.rule, fact.action, fact.transfer, fact.late) == ("agent", "transfer", True, False)
    assert fact.routing_key() == "decision.transfer"
    (cmd,) = await rig.commanded(human, 1)
    assert isinstance(cmd, SendText)
    assert cmd.content == "正在转接"

    other = rig.text(rig.openid(), "你好")
    answer = await rig.ask(other, budget_s=5.0)
    assert answer is not None
    assert (answer.transfer, answer.rule) == (False, "echo")
    (cmd,) = await rig.commanded(other, 1)
    assert isinstance(cmd, SendText)
    assert cmd.content == "v1: 你好"


async def test_commands_of_one_decision_keep_their_order(rig: Rig) -> None:
    await rig.start_router()
    bot = rig.text(rig.openid(), "尺码")
    await rig.ask(bot)
    note, chart = await rig.commanded(bot, 2)
    assert isinstance(note, SendText)
    assert isinstance(chart, SendImage)
    assert chart.asset == "size-chart"
    assert [(c.seq, c.total, c.cause_id) for c in (note, chart)] == [(0, 2, bot.id), (1, 2, bot.id)]
    assert [c.id for c in (note, chart)] == [derived_id(bot.id, "0"), derived_id(bot.id, "1")]
    assert {(c.openid, c.correlation_id) for c in (note, chart)} == {
        (bot.openid, bot.correlation_id)
    }


async def test_a_user_waiting_in_the_agent_queue_is_transferred_again(rig: Rig) -> None:
    await rig.start_router()
    user = rig.openid()
    first = rig.text(user, "人工")
    answer = await rig.ask(first)
    assert answer is not None
    assert answer.transfer
    await rig.decided(first)
    # WeChat pushes what the user writes while waiting: it goes to the agents again, with
    # no automatic answer.
    waiting = rig.text(user, "还在吗？", at=first.create_time + 120)
    answer = await rig.ask(waiting)
    assert answer is not None
    assert (answer.transfer, answer.rule) == (True, "waiting-for-agent")
    fact = await rig.decided(waiting)
    assert fact.actions == ["transfer"]
    assert rig.commands_for(waiting) == []
    # Another user is not affected.
    stranger = rig.text(rig.openid(), "还在吗？")
    answer = await rig.ask(stranger)
    assert answer is not None
    assert not answer.transfer


async def test_events_are_never_transferred(rig: Rig) -> None:
    await rig.start_router()
    enter = rig.enter(rig.openid())
    # Ingress never waits for events; asked anyway, the answer is "no transfer".
    answer = await rig.ask(enter)
    assert answer is not None
    assert (answer.transfer, answer.rule) == (False, "welcome")
    fact = await rig.decided(enter)
    assert (fact.transfer, fact.action) == (False, "reply")
    (cmd,) = await rig.commanded(enter, 1)
    assert isinstance(cmd, SendText)
    assert cmd.content == "欢迎"


async def test_a_redelivered_event_produces_no_second_set_of_commands(rig: Rig) -> None:
    await rig.start_router()
    event = rig.text(rig.openid(), "尺码")
    answer = await rig.ask(event)
    assert answer is not None
    await rig.commanded(event, 2)
    before = sample("wxkf_router_redelivered_events_total", outcome="done")
    # The same event again (a redelivery, or a replayed dead letter), asked again.
    again = await rig.ask(event)
    assert again == answer
    await eventually(
        lambda: sample("wxkf_router_redelivered_events_total", outcome="done"),
        lambda n: n > before,
        what="the router saw the redelivery",
    )
    await rig.bus.publish(event)
    await eventually(
        lambda: sample("wxkf_router_redelivered_events_total", outcome="done"),
        lambda n: n > before + 1,
        what="the router saw the second redelivery",
    )
    assert len(rig.commands_for(event)) == 2
    assert len([f for f in rig.facts if f.event_id == event.id]) == 1


async def test_an_unfinished_plan_is_carried_out_not_decided_again(rig: Rig) -> None:
    """A router that died after storing its plan: the redelivery does that plan, same ids."""
    await rig.start_router()
    event = rig.text(rig.openid(), "人工")
    stored = SendText(
        id=derived_id(event.id, "0"),
        appid=event.appid,
        openid=event.openid,
        correlation_id=event.correlation_id,
        cause_id=event.id,
        content="the plan made before the crash",
    )
    fact = DecisionMade(
        id=derived_id(event.id, "decision"),
        appid=event.appid,
        openid=event.openid,
        correlation_id=event.correlation_id,
        event_id=event.id,
        rule="agent",
        action="transfer",
        actions=["transfer", "reply"],
        transfer=True,
    )
    plan = Plan(rule="agent", transfer=True, fact=fact, commands=[stored])
    assert await rig.store.set_if_absent(plans.key(event.id), plans.encode(plan), ttl_s=60)
    answer = await rig.ask(event)
    assert answer is not None
    assert (answer.transfer, answer.rule) == (True, "agent")
    (cmd,) = await rig.commanded(event, 1)
    assert cmd == stored
    raw = await eventually(
        lambda: rig.store.get(plans.key(event.id)),
        lambda raw: raw is not None and plans.decode(raw).done,
        what="the plan marked done",
    )
    assert raw is not None


async def test_typing_and_extension(rig: Rig) -> None:
    await rig.start_router()
    event = rig.text(rig.openid(), "bot: 推荐一款围巾")
    await rig.ask(event)
    (typing,) = await rig.commanded(event, 1)
    assert isinstance(typing, SendTyping)
    (forwarded,) = await eventually(
        lambda: [e for e in rig.extension_events if e.id == event.id], what="the extension event"
    )
    assert forwarded == event
    fact = await rig.decided(event)
    assert fact.actions == ["typing", "extension"]


async def test_an_extension_nobody_listens_to_is_counted_not_retried(rig: Rig) -> None:
    await rig.start_router()
    labels = {"topic": "ghost", "outcome": "unroutable"}
    before = sample("wxkf_router_extension_publishes_total", **labels)
    event = rig.text(rig.openid(), "ghost story")
    await rig.ask(event)
    await eventually(
        lambda: sample(
            "wxkf_router_extension_publishes_total", topic="ghost", outcome="unroutable"
        ),
        lambda n: n > before,
        what="the unroutable extension publish counted",
    )
    assert await rig.bus.dead_letters(ROUTER_EVENTS.name) == []


async def test_a_late_decision_is_recorded_and_counted(rig: Rig) -> None:
    await rig.start_router(decision_budget_ms=1000)
    before = sample("wxkf_router_late_decisions_total")
    # Ingress built this event 10 s ago: whoever asked stopped waiting long since.
    stale = msgspec.structs.replace(rig.text(rig.openid(), "人工"), time_ms=now_ms() - 10_000)
    await rig.ask(stale)
    fact = await rig.decided(stale)
    assert (fact.late, fact.transfer) == (True, True)
    assert sample("wxkf_router_late_decisions_total") > before
    assert len(await rig.commanded(stale, 1)) == 1


async def test_metrics_and_readiness(rig: Rig) -> None:
    await rig.start_router()
    event = rig.text(rig.openid(), "hi")
    await rig.ask(event)
    await rig.decided(event)
    internal = TestServer(internal_app([rig.servers[-1].app]))
    await internal.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(internal.make_url("/metrics")) as response:
                text = await response.text()
            async with session.get(internal.make_url("/readyz")) as response:
                assert response.status == 200
    finally:
        await internal.close()
    assert 'wxkf_router_decisions_total{action="reply",rule="echo"}' in text
    assert "wxkf_router_decision_duration_seconds_bucket" in text
    assert "wxkf_router_rules_file_valid 1.0" in text


async def test_a_message_that_is_not_an_inbound_event_is_dead_lettered(rig: Rig) -> None:
    await rig.start_router()
    stray = SendText(appid="wx", openid="o", correlation_id="c", content="wrong exchange")
    await rig.bus.publish(stray, routing_key="msg.text", exchange=EVENTS)
    letters = await eventually(
        lambda: rig.bus.dead_letters(ROUTER_EVENTS.name), what="the stray message dead-lettered"
    )
    assert [json.loads(d.body)["id"] for d in letters] == [stray.id]
    assert "not an inbound event" in letters[0].reason
    good = rig.text(rig.openid(), "hi")
    answer = await rig.ask(good)
    assert answer is not None
    assert len(await rig.commanded(good, 1)) == 1
