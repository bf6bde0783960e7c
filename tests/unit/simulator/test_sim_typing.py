"""Typing status (WECHAT.md §8) on both paths."""

from __future__ import annotations

import pytest
from sim_helpers import OPENID, SEND, Client, call, text

from services.simulator.clock import SimClock
from services.simulator.state import SimState

PATHS = ["/cgi-bin/message/custom/typing", "/cgi-bin/message/custom/business/typing"]


def typing(command: str = "Typing", openid: str = OPENID) -> dict[str, str]:
    return {"touser": openid, "command": command}


@pytest.mark.parametrize("path", PATHS)
async def test_typing_lasts_15_seconds_and_cannot_repeat(
    client: Client, state: SimState, clock: SimClock, token: str, path: str
) -> None:
    state.user_message(OPENID)
    assert await call(client, path, token, typing()) == {"errcode": 0, "errmsg": "ok"}
    assert state.user(OPENID).is_typing(clock.now())
    clock.advance(14)
    assert (await call(client, path, token, typing()))["errcode"] == 45081
    clock.advance(1)
    assert not state.user(OPENID).is_typing(clock.now())
    # 15 s after the user's message: still inside the 30 s exchange rule.
    assert (await call(client, path, token, typing()))["errcode"] == 0


@pytest.mark.parametrize("path", PATHS)
async def test_typing_needs_an_exchange_in_the_last_30_seconds(
    client: Client, state: SimState, clock: SimClock, token: str, path: str
) -> None:
    state.user_message(OPENID)
    clock.advance(31)
    assert (await call(client, path, token, typing()))["errcode"] == 45080
    # A delivered message is an exchange too.
    assert (await call(client, SEND, token, text()))["errcode"] == 0
    assert (await call(client, path, token, typing()))["errcode"] == 0


async def test_entering_alone_is_no_exchange(client: Client, state: SimState, token: str) -> None:
    state.user_entered(OPENID)
    assert (await call(client, PATHS[0], token, typing()))["errcode"] == 45080


async def test_delivered_message_cancels_typing(
    client: Client, state: SimState, clock: SimClock, token: str
) -> None:
    state.user_message(OPENID)
    assert (await call(client, PATHS[1], token, typing()))["errcode"] == 0
    assert (await call(client, SEND, token, text()))["errcode"] == 0
    assert not state.user(OPENID).is_typing(clock.now())
    assert (await call(client, PATHS[1], token, typing()))["errcode"] == 0


async def test_cancel_typing(client: Client, state: SimState, clock: SimClock, token: str) -> None:
    state.user_message(OPENID)
    await call(client, PATHS[0], token, typing())
    assert (await call(client, PATHS[0], token, typing("CancelTyping")))["errcode"] == 0
    assert not state.user(OPENID).is_typing(clock.now())
    assert (await call(client, PATHS[0], token, typing()))["errcode"] == 0


async def test_typing_is_subject_to_the_window(
    client: Client, state: SimState, clock: SimClock, token: str
) -> None:
    assert (await call(client, PATHS[0], token, typing()))["errcode"] == 45015
    state.user_message(OPENID)
    for _ in range(5):
        await call(client, SEND, token, text())
    assert (await call(client, PATHS[0], token, typing()))["errcode"] == 45047
    clock.advance(48 * 3600)
    token = state.token_for_tests()
    assert (await call(client, PATHS[0], token, typing()))["errcode"] == 45015


async def test_typing_bad_input(client: Client, state: SimState, token: str) -> None:
    state.user_message(OPENID)
    path = PATHS[0]
    assert (await call(client, path, token, typing("typing")))["errcode"] == 45072
    assert (await call(client, path, token, {"touser": OPENID}))["errcode"] == 45072
    assert (await call(client, path, token, typing(openid="")))["errcode"] == 40003
    assert (await call(client, path, token, b""))["errcode"] == 44002
    assert (await call(client, path, token, b"{"))["errcode"] == 47001
    assert (await call(client, path, None, typing()))["errcode"] == 41001
    assert not state.user(OPENID).is_typing(state.now())
