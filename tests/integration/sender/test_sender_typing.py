"""Typing: shown only when WeChat would allow it, otherwise rejected without a call."""

from __future__ import annotations

import uuid
from typing import Literal

from libs.common.schemas import Rejected, SendTyping, Sent
from libs.common.wechat.api import TYPING_PATHS
from services.simulator.api import BUSINESS_TYPING, TYPING
from services.simulator.config import DEMO_APPID
from services.simulator.faults import Fault
from tests.integration.sender.conftest import Rig


def typing(user: str, command: Literal["Typing", "CancelTyping"] = "Typing") -> SendTyping:
    return SendTyping(
        appid=DEMO_APPID,
        openid=user,
        correlation_id=uuid.uuid4().hex,
        command=command,
    )


async def test_typing_right_after_a_user_message_is_shown(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    cmd = typing(user)
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Sent)
    assert outcome.routing_key() == "outbound.sent.typing"
    assert rig.sim.user(user).is_typing(rig.sim.now())
    assert rig.sim.stats.total(TYPING, 0) == 1


async def test_typing_again_while_typing_is_rejected_without_a_call(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    first, second = typing(user), typing(user)
    await rig.send(first)
    await rig.settled([first])
    rig.sim.clock.advance(5)
    await rig.send(second)
    outcome = (await rig.settled([second]))[second.id]
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.errcode) == ("typing_not_allowed", None)
    assert rig.sim.stats.total(TYPING) == 1


async def test_typing_after_the_indicator_ended_is_shown_again(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    first = typing(user)
    await rig.send(first)
    await rig.settled([first])
    rig.sim.clock.advance(16)  # typing lasted 15 s; the exchange was 16 s ago (< 30 s)
    second = typing(user)
    await rig.send(second)
    assert isinstance((await rig.settled([second]))[second.id], Sent)


async def test_typing_without_a_recent_exchange_is_rejected(rig: Rig) -> None:
    await rig.start_sender()
    entered, quiet = rig.openid(), rig.openid()
    await rig.entered(entered)  # entering the chat is not an exchange of messages
    await rig.user_message(quiet)
    rig.sim.clock.advance(31)
    commands = [typing(entered), typing(quiet)]
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    for cmd in commands:
        outcome = outcomes[cmd.id]
        assert isinstance(outcome, Rejected)
        assert outcome.reason == "typing_not_allowed"
    assert rig.sim.stats.total(TYPING) == 0


async def test_a_delivered_message_is_an_exchange_and_stops_typing(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    first = typing(user)
    await rig.send(first)
    await rig.settled([first])
    rig.sim.clock.advance(25)
    reply = rig.texts(user, ["here you go"])
    await rig.send(*reply)
    await rig.settled(reply)
    assert not rig.sim.user(user).is_typing(rig.sim.now())
    rig.sim.clock.advance(20)  # 45 s after the user's message, 20 s after our reply
    again = typing(user)
    await rig.send(again)
    assert isinstance((await rig.settled([again]))[again.id], Sent)


async def test_typing_needs_a_window_with_room_but_spends_none(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    show = typing(user)
    await rig.send(show)
    await rig.settled([show])
    replies = rig.texts(user, [f"r{i}" for i in range(5)])
    await rig.send(*replies)
    outcomes = await rig.settled(replies)
    assert all(isinstance(outcomes[c.id], Sent) for c in replies)  # typing took no slot
    late = typing(user)
    await rig.send(late)
    outcome = (await rig.settled([late]))[late.id]
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "typing_not_allowed"


async def test_cancel_typing_is_always_sent(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    show, cancel = typing(user), typing(user, "CancelTyping")
    await rig.send(show)
    await rig.settled([show])
    await rig.send(cancel)
    assert isinstance((await rig.settled([cancel]))[cancel.id], Sent)
    assert not rig.sim.user(user).is_typing(rig.sim.now())


async def test_the_typing_path_is_configurable(rig: Rig) -> None:
    assert BUSINESS_TYPING in TYPING_PATHS
    await rig.start_sender(typing_path=BUSINESS_TYPING)
    user = rig.openid()
    await rig.user_message(user)
    cmd = typing(user)
    await rig.send(cmd)
    assert isinstance((await rig.settled([cmd]))[cmd.id], Sent)
    assert rig.sim.stats.total(BUSINESS_TYPING, 0) == 1
    assert rig.sim.stats.total(TYPING) == 0


async def test_wechat_refusing_typing_is_reported_with_its_errcode(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(TYPING, Fault(errcode=45080))
    cmd = typing(user)
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.errcode) == ("typing_not_allowed", 45080)
