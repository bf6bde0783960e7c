"""Fault injection: sequences, seeded rates, dropped connections, accept-then-drop."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from sim_helpers import OPENID, SEND, Client, call, text

from services.simulator.faults import Fault, FaultPlan, FaultRule
from services.simulator.state import SimState


async def add_faults(client: Client, rule: dict[str, Any]) -> None:
    resp = await client.post("/sim/faults", json=rule)
    assert resp.status == 200, await resp.text()


async def raw_send(client: Client, token: str, **kw: Any) -> aiohttp.ClientResponse:
    import msgspec

    return await client.post(
        SEND, params={"access_token": token}, data=msgspec.json.encode(text()), **kw
    )


async def test_sequence_is_consumed_in_order(client: Client, state: SimState, token: str) -> None:
    state.user_message(OPENID)
    await add_faults(
        client,
        {
            "path": SEND,
            "sequence": [
                {"errcode": -1},
                {"status": 503},
                {},
                {"errcode": 45011, "errmsg": "api freq out of limit"},
                {"status": 502},
            ],
        },
    )
    assert (await call(client, SEND, token, text()))["errcode"] == -1
    resp = await raw_send(client, token)
    assert resp.status == 503
    assert "503 Service Unavailable" in await resp.text()
    assert (await call(client, SEND, token, text()))["errcode"] == 0  # the pass step
    answer = await call(client, SEND, token, text())
    assert answer["errcode"] == 45011
    assert answer["errmsg"].startswith("api freq out of limit rid: ")
    assert (await raw_send(client, token)).status == 502
    # Spent: calls go through again, and only the pass step delivered.
    assert (await call(client, SEND, token, text()))["errcode"] == 0
    assert len(state.inbox(OPENID)) == 2
    assert state.user(OPENID).grants["message"].count == 3
    calls = (await (await client.get("/sim/stats")).json())["calls"][SEND]
    assert calls == {"-1": 1, "http_503": 1, "0": 2, "45011": 1, "http_502": 1}
    assert state.stats.faults == 4
    assert (await (await client.get("/sim/faults")).json())["rules"] == []


async def test_injected_window_errors_deliver_nothing(
    client: Client, state: SimState, token: str
) -> None:
    state.user_message(OPENID)
    await add_faults(client, {"path": SEND, "sequence": [{"errcode": 45015}, {"errcode": 45047}]})
    assert (await call(client, SEND, token, text()))["errcode"] == 45015
    assert (await call(client, SEND, token, text()))["errcode"] == 45047
    assert state.inbox(OPENID) == []
    assert state.user(OPENID).grants["message"].count == 5


async def test_injected_40001_refuses_a_valid_token(
    client: Client, state: SimState, token: str
) -> None:
    state.user_message(OPENID)
    await add_faults(client, {"path": "*", "sequence": [{"errcode": 40001}]})
    assert (await call(client, SEND, token, text()))["errcode"] == 40001
    assert (await call(client, SEND, token, text()))["errcode"] == 0


async def test_dropped_connection_delivers_nothing(
    client: Client, state: SimState, token: str
) -> None:
    state.user_message(OPENID)
    await add_faults(client, {"path": SEND, "sequence": [{"drop": True}]})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await raw_send(client, token)
    assert state.inbox(OPENID) == []
    assert state.stats.total(SEND, "dropped") == 1
    assert (await call(client, SEND, token, text()))["errcode"] == 0


async def test_accept_then_drop_delivers_but_never_answers(
    client: Client, state: SimState, token: str
) -> None:
    state.user_message(OPENID)
    await add_faults(client, {"path": SEND, "sequence": [{"accept_then_drop": True}]})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await raw_send(client, token)
    assert [m.msgtype for m in state.inbox(OPENID)] == ["text"]
    assert state.user(OPENID).grants["message"].count == 4
    assert state.stats.delivered == 1
    assert state.stats.total(SEND, "dropped") == 1


async def test_latency_delays_the_answer(client: Client, state: SimState, token: str) -> None:
    state.user_message(OPENID)
    await add_faults(client, {"path": SEND, "sequence": [{"latency_ms": 500}]})
    with pytest.raises(asyncio.TimeoutError):
        await raw_send(client, token, timeout=aiohttp.ClientTimeout(total=0.05))
    # The slow call still completes on the server (like WeChat), then calls are normal.
    await wait_for(lambda: len(state.inbox(OPENID)) == 1)
    assert (await call(client, SEND, token, text()))["errcode"] == 0


async def wait_for(predicate: Any, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


async def test_latency_combines_with_an_errcode(
    client: Client, state: SimState, token: str
) -> None:
    state.user_message(OPENID)
    await add_faults(client, {"path": SEND, "sequence": [{"latency_ms": 20, "errcode": -1}]})
    assert (await call(client, SEND, token, text()))["errcode"] == -1


async def test_wildcard_applies_to_every_wechat_path_but_not_sim(
    client: Client, state: SimState, token: str
) -> None:
    await add_faults(client, {"path": "*", "rate": 1.0, "outcomes": [{"errcode": -1}]})
    resp = await client.get("/cgi-bin/token", params={"grant_type": "client_credential"})
    assert (await resp.json(content_type=None))["errcode"] == -1
    assert (await call(client, "/cgi-bin/message/custom/typing", token, {}))["errcode"] == -1
    assert (await client.get("/sim/stats")).status == 200
    resp = await client.delete("/sim/faults")
    assert (await resp.json()) == {"cleared": 1}
    state.user_message(OPENID)
    assert (await call(client, SEND, token, text()))["errcode"] == 0


async def test_path_rules_come_before_wildcard_rules(client: Client, token: str) -> None:
    await add_faults(client, {"path": "*", "sequence": [{"errcode": 45009}]})
    await add_faults(client, {"path": SEND, "sequence": [{"errcode": 45011}]})
    assert (await call(client, SEND, token, text()))["errcode"] == 45011
    assert (await call(client, SEND, token, text()))["errcode"] == 45009


def draws(rule: FaultRule, n: int) -> list[Fault | None]:
    plan = FaultPlan()
    plan.add(rule)
    return [plan.next(SEND) for _ in range(n)]


def test_rates_are_reproducible_with_a_seed() -> None:
    rule = FaultRule(
        path=SEND,
        rate=0.3,
        seed=7,
        outcomes=[Fault(errcode=-1), Fault(status=503), Fault(drop=True)],
    )
    first = draws(rule, 300)
    assert first == draws(rule, 300)
    fired = [f for f in first if f is not None]
    assert 0 < len(fired) < 300
    assert {f.errcode for f in fired} >= {-1, None}
    assert any(f.drop for f in fired)
    assert draws(rule, 300) != draws(
        FaultRule(path=SEND, rate=0.3, seed=8, outcomes=rule.outcomes), 300
    )


def test_rate_rules_do_not_touch_other_paths() -> None:
    plan = FaultPlan()
    plan.add(FaultRule(path=SEND, rate=1.0, outcomes=[Fault(errcode=-1)]))
    assert plan.next("/cgi-bin/token") is None
    assert plan.next(SEND) == Fault(errcode=-1)


@pytest.mark.parametrize(
    "rule",
    [
        {"path": SEND},
        {"path": SEND, "sequence": []},
        {"path": SEND, "rate": 0.5},
        {"path": SEND, "rate": 1.5, "outcomes": [{"errcode": -1}]},
        {"path": SEND, "sequence": [{"errcode": -1, "status": 500}]},
        {"path": SEND, "sequence": [{"drop": True, "accept_then_drop": True}]},
        {"path": SEND, "sequence": [{"errcode": 0}]},
        {"path": SEND, "sequence": [{"status": 42}]},
        {"path": SEND, "sequence": [{"latency_ms": -1}]},
        {"path": SEND, "sequence": [{"explode": True}]},
        {"path": "cgi-bin/x", "sequence": [{"errcode": -1}]},
        {"path": SEND, "sequence": [{"errcode": -1}], "rate": 0.5, "outcomes": [{"errcode": -1}]},
        {"rules": [{"path": SEND}]},
    ],
)
async def test_bad_fault_rules_are_refused(client: Client, rule: dict[str, Any]) -> None:
    resp = await client.post("/sim/faults", json=rule)
    assert resp.status == 400
    answer = await resp.json()
    assert answer["error"] == "invalid_request"
    assert answer["message"]
    assert (await (await client.get("/sim/faults")).json())["rules"] == []


async def test_several_rules_at_once_and_malformed_json(client: Client) -> None:
    resp = await client.post(
        "/sim/faults",
        json={
            "rules": [
                {"path": SEND, "sequence": [{"errcode": -1}]},
                {"path": "*", "rate": 0.1, "outcomes": [{"status": 500}]},
            ]
        },
    )
    assert (await resp.json())["added"] == 2
    resp = await client.post("/sim/faults", data=b"{nope")
    assert resp.status == 400
    assert (await resp.json())["error"] == "malformed_json"
    resp = await client.delete("/sim/faults", params={"path": SEND})
    assert (await resp.json())["cleared"] == 1
