"""The /sim/ endpoints: clock, users, inbox, stats, reset; and the config and clock objects."""

from __future__ import annotations

import pytest
from sim_helpers import OPENID, SEND, START, Client, call, text

from services.simulator.app import create_app, running
from services.simulator.clock import SimClock
from services.simulator.config import SimConfig, from_env
from services.simulator.state import SimState


async def test_clock_get_advance_set(client: Client, clock: SimClock) -> None:
    assert (await (await client.get("/sim/clock")).json()) == {"now": START}
    resp = await client.post("/sim/clock", json={"advance_s": 90})
    assert (await resp.json()) == {"now": START + 90}
    resp = await client.post("/sim/clock", json={"set": 1_800_000_000})
    assert (await resp.json()) == {"now": 1_800_000_000}
    assert clock.now() == 1_800_000_000


@pytest.mark.parametrize(
    "body",
    [{}, {"advance_s": -1}, {"advance_s": 1, "set": 2}, {"set": -5}, {"advance": 1}, {"set": "x"}],
)
async def test_clock_bad_requests(client: Client, clock: SimClock, body: dict[str, object]) -> None:
    resp = await client.post("/sim/clock", json=body)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"
    assert clock.now() == START


async def test_user_message_endpoint_opens_the_window(
    client: Client, state: SimState, token: str
) -> None:
    resp = await client.post(f"/sim/users/{OPENID}/message", json={})
    view = await resp.json()
    assert view["grants"]["message"] == {"count": 5, "until": START + 48 * 3600, "open": True}
    assert view["messages_sent"] == 1
    assert (await call(client, SEND, token, text()))["errcode"] == 0
    view = await (await client.get(f"/sim/users/{OPENID}")).json()
    assert view["received"] == 1
    assert view["grants"]["message"]["count"] == 4


async def test_user_action_at_a_past_time(client: Client, state: SimState, token: str) -> None:
    resp = await client.post(
        f"/sim/users/{OPENID}/message", json={"kind": "enter", "at": START - 60}
    )
    assert (await resp.json())["grants"]["enter"]["open"] is False
    assert (await call(client, SEND, token, text()))["errcode"] == 45015
    await client.post(f"/sim/users/{OPENID}/message", json={"kind": "enter"})
    assert (await call(client, SEND, token, text()))["errcode"] == 0


async def test_user_action_bad_requests(client: Client) -> None:
    resp = await client.post(f"/sim/users/{OPENID}/message", json={"kind": "leave"})
    assert resp.status == 400
    resp = await client.post(f"/sim/users/{OPENID}/message", data=b"nope")
    assert resp.status == 400
    assert (await resp.json())["error"] == "malformed_json"


async def test_inbox_of_a_user_who_got_nothing(client: Client) -> None:
    resp = await client.get("/sim/users/nobody/inbox")
    assert (await resp.json()) == {"openid": "nobody", "messages": []}


async def test_outcomes_add_up_the_users_of_a_prefix(
    client: Client, state: SimState, token: str
) -> None:
    for openid in ("oGroupA1", "oGroupA2", "oOther"):
        state.user_message(openid)
        await call(client, SEND, token, text(openid))
    state.users["oGroupA2"].grants.clear()
    assert (await call(client, SEND, token, text("oGroupA2")))["errcode"] == 45015
    resp = await client.get("/sim/outcomes", params={"prefix": "oGroupA"})
    assert await resp.json() == {
        "users": 2,
        "messages_sent": 2,
        "delivered": 2,
        "refused": {"45015": 1},
    }
    resp = await client.get("/sim/outcomes")
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_stats_and_reset(client: Client, state: SimState, token: str) -> None:
    state.user_message(OPENID)
    await call(client, SEND, token, text())
    await call(client, SEND, "bad", text())
    stats = await (await client.get("/sim/stats")).json()
    assert stats["calls"] == {SEND: {"0": 1, "40001": 1}}
    assert stats["delivered"] == 1
    assert stats["now"] == START
    resp = await client.post("/sim/reset")
    assert (await resp.json()) == {"reset": True, "now": START}
    stats = await (await client.get("/sim/stats")).json()
    assert stats["calls"] == {}
    assert state.inbox(OPENID) == []
    # Tokens are forgotten too.
    assert (await call(client, SEND, token, text()))["errcode"] == 40001


async def test_running_serves_on_a_free_port() -> None:
    import aiohttp

    state = SimState(SimConfig(), clock=SimClock(start=START, ticking=False))
    async with running(create_app(state=state)) as url, aiohttp.ClientSession() as session:
        assert url.startswith("http://127.0.0.1:")
        async with session.get(url + "/sim/clock") as resp:
            assert (await resp.json()) == {"now": START}


def test_create_app_refuses_a_config_that_is_not_the_states() -> None:
    with pytest.raises(ValueError, match="either config or a state"):
        create_app(SimConfig(), state=SimState(SimConfig()))


def test_ticking_clock_runs_with_time_and_moves_on_demand() -> None:
    mono = [100.0]
    clock = SimClock(start=1000.0, monotonic=lambda: mono[0])
    assert clock.now() == 1000.0
    mono[0] = 102.5
    assert clock.now() == 1002.5
    assert clock.advance(10) == 1012.5
    assert clock.set(50) == 50.0
    mono[0] = 103.0
    assert clock.now() == 50.5
    with pytest.raises(ValueError, match="only advances"):
        clock.advance(-1)
    frozen = SimClock(start=7.0, ticking=False, monotonic=lambda: mono[0])
    mono[0] = 500.0
    assert frozen.now() == 7.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"token_ttl_s": 0}, "token_ttl_s must be positive"),
        ({"window_message_count": -1}, "window_message_count must not be negative"),
        ({"text_max_bytes": 0}, "text_max_bytes must be at least 1"),
        ({"stable_rotate_before_s": 7200}, "below token_ttl_s"),
        ({"appid": ""}, "must not be empty"),
    ],
)
def test_config_refuses_nonsense(override: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimConfig(**override)  # type: ignore[arg-type]


def test_config_from_env() -> None:
    config = from_env(
        {"WXKF_APPID": "wx1111111111111111", "WXKF_APP_SECRET": "s"}, text_max_bytes=10
    )
    assert (config.appid, config.secret, config.text_max_bytes) == ("wx1111111111111111", "s", 10)
    assert from_env({}).appid == SimConfig().appid


def test_package_exports_the_public_api() -> None:
    import services.simulator as sim
    from services.simulator.pusher import Pusher

    assert sim.Pusher is Pusher
    assert sim.SimState is SimState
    assert sim.create_app is create_app
    with pytest.raises(AttributeError):
        _ = sim.nothing_here


async def test_looking_at_a_user_does_not_make_them_known(client: Client, state: SimState) -> None:
    view = await (await client.get("/sim/users/stranger")).json()
    assert view["grants"] == {}
    assert "stranger" not in state.users
