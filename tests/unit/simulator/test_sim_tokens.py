"""access_token rules (WECHAT.md §10) over HTTP."""

from __future__ import annotations

from typing import Any

from sim_helpers import OPENID, SEND, Client, call, text

from services.simulator.clock import SimClock
from services.simulator.config import DEMO_APPID, DEMO_SECRET
from services.simulator.state import SimState


async def get_token(client: Client, **override: str) -> dict[str, Any]:
    query = {"grant_type": "client_credential", "appid": DEMO_APPID, "secret": DEMO_SECRET}
    query.update(override)
    resp = await client.get("/cgi-bin/token", params=query)
    assert resp.status == 200
    answer: dict[str, Any] = await resp.json(content_type=None)
    return answer


async def stable(client: Client, **override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "grant_type": "client_credential",
        "appid": DEMO_APPID,
        "secret": DEMO_SECRET,
    }
    body.update(override)
    return await call(client, "/cgi-bin/stable_token", None, body)


async def use(client: Client, token: str) -> int:
    """The errcode a send with this token gets (the window is open, so 0 means valid)."""
    answer = await call(client, SEND, token, text())
    return int(answer["errcode"])


async def test_token_shape_and_expiry(client: Client, state: SimState, clock: SimClock) -> None:
    state.user_message(OPENID)
    answer = await get_token(client)
    assert answer["expires_in"] == 7200
    assert len(answer["access_token"]) >= 100
    assert "errcode" not in answer
    clock.advance(7199)
    state.user_message(OPENID)
    assert await use(client, answer["access_token"]) == 0
    clock.advance(1)
    assert await use(client, answer["access_token"]) == 42001


async def test_token_bad_credentials(client: Client) -> None:
    assert (await get_token(client, appid="wx0000000000000000"))["errcode"] == 40013
    assert (await get_token(client, grant_type="password"))["errcode"] == 40002
    assert (await get_token(client, secret="not-a-secret"))["errcode"] == 40125
    assert (await get_token(client, secret="f" * 32))["errcode"] == 40001
    assert (await get_token(client, appid=""))["errcode"] == 41002
    assert (await get_token(client, secret=""))["errcode"] == 41004
    answer = await get_token(client, appid="wx0000000000000000")
    assert answer["errmsg"].startswith("invalid appid rid: ")
    assert len(answer["errmsg"].split("rid: ")[1].split("-")) == 3


async def test_new_token_keeps_old_for_five_minutes(
    client: Client, state: SimState, clock: SimClock
) -> None:
    state.user_message(OPENID)
    first = (await get_token(client))["access_token"]
    clock.advance(1000)
    second = (await get_token(client))["access_token"]
    assert first != second
    clock.advance(299)
    assert await use(client, first) == 0
    clock.advance(1)
    # Cut short by the newer token: "not latest", not "expired".
    assert await use(client, first) == 40001
    assert await use(client, second) == 0


async def test_missing_and_unknown_tokens(client: Client, state: SimState) -> None:
    state.user_message(OPENID)
    assert (await call(client, SEND, None, text()))["errcode"] == 41001
    assert (await call(client, SEND, "", text()))["errcode"] == 41001
    assert (await call(client, SEND, "nonsense", text()))["errcode"] == 40001


async def test_stable_token_same_until_five_minutes_before_expiry(
    client: Client, state: SimState, clock: SimClock
) -> None:
    first = await stable(client)
    assert first["expires_in"] == 7200
    clock.advance(100)
    again = await stable(client)
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == 7100
    clock.advance(6800)  # 300 s left: rotation time
    rotated = await stable(client)
    assert rotated["access_token"] != first["access_token"]
    assert rotated["expires_in"] == 7200
    assert (await stable(client))["access_token"] == rotated["access_token"]
    state.user_message(OPENID)
    # Both work during the last five minutes of the old one; then it expires naturally.
    assert await use(client, first["access_token"]) == 0
    assert await use(client, rotated["access_token"]) == 0
    clock.advance(300)
    state.user_message(OPENID)
    assert await use(client, first["access_token"]) == 42001
    assert state.stats.tokens["stable_rotated"] == 1
    assert state.stats.tokens["stable_token"] == 4


async def test_stable_token_force_refresh_rules(
    client: Client, state: SimState, clock: SimClock
) -> None:
    state.user_message(OPENID)
    t0 = (await stable(client))["access_token"]
    t1 = (await stable(client, force_refresh=True))["access_token"]
    assert t1 != t0
    # The replaced token survives the documented 30 s overlap, then is refused.
    clock.advance(29)
    assert await use(client, t0) == 0
    # A forced call less than 30 s after the last returns the current token unchanged.
    assert (await stable(client, force_refresh=True))["access_token"] == t1
    clock.advance(1)
    assert await use(client, t0) == 40001
    t2 = (await stable(client, force_refresh=True))["access_token"]
    assert t2 != t1
    assert await use(client, t1) == 0
    assert state.stats.tokens["stable_forced"] == 2
    assert state.stats.tokens["stable_force_ignored"] == 1


async def test_second_force_kills_a_leaked_token_at_once(client: Client, clock: SimClock) -> None:
    leaked = (await stable(client))["access_token"]
    await stable(client, force_refresh=True)
    clock.advance(10)
    await stable(client, force_refresh=True)  # ignored: too soon
    clock.advance(20)
    await stable(client, force_refresh=True)
    assert await use(client, leaked) == 40001


async def test_force_refresh_daily_limit(client: Client, clock: SimClock) -> None:
    # Start of a China Standard Time day, so all 21 calls fall on it.
    clock.set(1_700_000_000 - (1_700_000_000 + 8 * 3600) % 86400)
    for _ in range(20):
        assert "access_token" in await stable(client, force_refresh=True)
        clock.advance(30)
    assert (await stable(client, force_refresh=True))["errcode"] == 45009
    assert "access_token" in await stable(client)  # normal mode still works
    clock.advance(86400)
    assert "access_token" in await stable(client, force_refresh=True)


async def test_endpoints_are_isolated(client: Client, state: SimState, clock: SimClock) -> None:
    state.user_message(OPENID)
    plain = (await get_token(client))["access_token"]
    st = (await stable(client))["access_token"]
    await stable(client, force_refresh=True)
    await get_token(client)
    clock.advance(301)
    state.user_message(OPENID)
    # Each refresh only cut its own endpoint's tokens.
    assert await use(client, plain) == 40001
    assert await use(client, st) == 40001
    assert state.stats.tokens["token"] == 2


async def test_stable_token_bad_bodies(client: Client) -> None:
    assert (await stable(client, appid="wxnope"))["errcode"] == 40013
    assert (await stable(client, grant_type="x"))["errcode"] == 40002
    assert (await stable(client, secret="x"))["errcode"] == 40125
    assert (await stable(client, force_refresh="yes"))["errcode"] == 47001
    assert (await stable(client, appid=5))["errcode"] == 47001
    assert (await call(client, "/cgi-bin/stable_token", None, b"{nope"))["errcode"] == 47001
    assert (await call(client, "/cgi-bin/stable_token", None, b""))["errcode"] == 44002
    assert (await call(client, "/cgi-bin/stable_token", None, b"[]"))["errcode"] == 47001
