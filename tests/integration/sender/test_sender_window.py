"""The reply window: what WeChat allows is delivered, the rest is refused without a call."""

from __future__ import annotations

import msgspec

from libs.common.schemas import Rejected, Sent
from services.simulator.api import SEND
from services.simulator.faults import Fault
from tests.integration.sender.conftest import Rig, retries
from tests.support.waiting import eventually


async def test_six_replies_after_one_message_deliver_five(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    commands = rig.texts(user, [f"reply {i}" for i in range(6)])
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    assert [type(outcomes[c.id]).__name__ for c in commands] == ["Sent"] * 5 + ["Rejected"]
    last = outcomes[commands[-1].id]
    assert isinstance(last, Rejected)
    assert last.reason == "quota_exhausted"
    assert last.errcode is None  # refused by our own count: WeChat was not asked
    assert rig.received(user) == [f"reply {i}" for i in range(5)]
    assert rig.sim.stats.total(SEND) == 5


async def test_entering_the_chat_allows_a_welcome_of_two(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.entered(user)
    commands = rig.texts(user, ["welcome", "how can we help?", "one too many"])
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    assert [type(outcomes[c.id]) for c in commands] == [Sent, Sent, Rejected]
    third = outcomes[commands[2].id]
    assert isinstance(third, Rejected)
    assert third.reason == "quota_exhausted"
    assert rig.received(user) == ["welcome", "how can we help?"]


async def test_a_new_user_message_opens_a_new_window(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    first = rig.texts(user, [f"a{i}" for i in range(6)])
    await rig.send(*first)
    await rig.settled(first)
    rig.sim.clock.advance(60)
    await rig.user_message(user)
    second = rig.texts(user, ["b0", "b1"])
    await rig.send(*second)
    outcomes = await rig.settled(second)
    assert all(isinstance(outcomes[c.id], Sent) for c in second)
    assert rig.received(user)[-2:] == ["b0", "b1"]
    assert len(rig.received(user)) == 7


async def test_past_48_hours_the_window_has_expired(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    rig.sim.clock.advance(48 * 3600 + 1)
    [cmd] = rig.texts(user, ["too late"])
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "window_expired"
    assert rig.sim.stats.total(SEND) == 0


async def test_without_a_window_nothing_is_sent(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    [cmd] = rig.texts(user, ["hello?"])
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "no_window"
    assert outcome.routing_key() == "outbound.rejected.no_window"
    assert rig.sim.stats.total(SEND) == 0


async def test_wechats_45047_corrects_our_count_and_is_reported(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    # WeChat is stricter than its table (WECHAT.md §7.1): it refuses the very first reply.
    rig.fault(SEND, Fault(errcode=45047))
    first = rig.texts(user, ["refused by WeChat"])
    await rig.send(*first)
    outcome = (await rig.settled(first))[first[0].id]
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.errcode) == ("quota_exhausted", 45047)
    # Our view now agrees with WeChat's: the next reply is refused without asking.
    calls = rig.sim.stats.total(SEND)
    second = rig.texts(user, ["also refused"])
    await rig.send(*second)
    again = (await rig.settled(second))[second[0].id]
    assert isinstance(again, Rejected)
    assert (again.reason, again.errcode) == ("quota_exhausted", None)
    assert rig.sim.stats.total(SEND) == calls
    # A new message from the user (a later CreateTime) renews the window.
    rig.sim.clock.advance(1)
    await rig.user_message(user)
    third = rig.texts(user, ["now it works"])
    await rig.send(*third)
    assert isinstance((await rig.settled(third))[third[0].id], Sent)


async def test_wechats_45015_closes_the_window_in_our_view(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, Fault(errcode=45015))
    commands = rig.texts(user, ["refused", "refused without a call"])
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    first, second = (outcomes[c.id] for c in commands)
    assert isinstance(first, Rejected)
    assert (first.reason, first.errcode) == ("window_expired", 45015)
    assert isinstance(second, Rejected)
    assert (second.reason, second.errcode) == ("window_expired", None)
    assert rig.sim.stats.total(SEND) == 1


async def test_a_reply_racing_ahead_of_its_window_waits_for_it(rig: Rig) -> None:
    """The router can answer before the sender has seen the user's message (two queues)."""
    await rig.start_sender(window_grace_s=30.0)
    user = rig.openid()
    [cmd] = rig.texts(user, ["fast answer"])
    before = retries("window_grace")
    await rig.send(cmd)
    await eventually(lambda: retries("window_grace"), lambda n: n > before, what="a refusal")
    assert rig.facts == []
    await rig.user_message(user)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Sent)
    assert outcome.attempts > 1
    assert rig.received(user) == ["fast answer"]


async def test_a_reply_that_names_its_window_opens_it_without_waiting(rig: Rig) -> None:
    """A command of the router says which window its event opens: no wait for the other
    queue, and the window it opens is exactly the one that event would (5 messages)."""
    await rig.start_sender(window_grace_s=30.0)
    user = rig.openid()
    at = rig.sim.clock.now()
    rig.sim.user_message(user, at)  # WeChat has the message; the sender has not seen it
    commands = [
        msgspec.structs.replace(c, opens="message", opened_at=int(at))
        for c in rig.texts(user, [f"reply {i}" for i in range(6)])
    ]
    before = retries("window_grace")
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    assert [type(outcomes[c.id]).__name__ for c in commands] == ["Sent"] * 5 + ["Rejected"]
    assert all(outcomes[c.id].attempts == 1 for c in commands)
    assert retries("window_grace") == before
    assert rig.received(user) == [f"reply {i}" for i in range(5)]


async def test_a_window_wechat_closed_is_not_reopened_by_a_command(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    at = rig.sim.clock.now()
    await rig.user_message(user, at)
    rig.fault(SEND, Fault(errcode=45015))
    [first, second] = [
        msgspec.structs.replace(c, opens="message", opened_at=int(at))
        for c in rig.texts(user, ["refused", "still refused"])
    ]
    await rig.send(first, second)
    outcomes = await rig.settled([first, second])
    assert isinstance(outcomes[second.id], Rejected)
    assert outcomes[second.id].reason == "window_expired"
    assert rig.sim.stats.total(SEND) == 1


async def test_the_entry_grant_lasts_60_seconds(rig: Rig) -> None:
    """Entering the chat (no message from the user) allows a welcome within 60 s of the
    event's CreateTime only; past it the grant has ended although a slot was left."""
    await rig.start_sender()
    user = rig.openid()
    await rig.entered(user)
    rig.sim.clock.advance(59)
    in_time = rig.texts(user, ["welcome"])
    await rig.send(*in_time)
    assert isinstance((await rig.settled(in_time))[in_time[0].id], Sent)
    rig.sim.clock.advance(2)  # 61 s after entering; one of the two slots still unused
    late = rig.texts(user, ["anything else?"])
    await rig.send(*late)
    outcome = (await rig.settled(late))[late[0].id]
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.errcode) == ("window_expired", None)
    assert rig.received(user) == ["welcome"]
    assert rig.sim.stats.total(SEND) == 1  # refused by our own view: WeChat was not asked


async def test_a_welcome_past_the_entry_grant_is_refused_without_a_call(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.entered(user)
    rig.sim.clock.advance(61)
    [cmd] = rig.texts(user, ["welcome, a little late"])
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "window_expired"
    assert outcome.routing_key() == "outbound.rejected.window_expired"
    assert rig.sim.stats.total(SEND) == 0
    assert rig.received(user) == []
