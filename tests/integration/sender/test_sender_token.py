"""The shared access token seen from the sender: one refresh for everyone, forced only when
WeChat hands back the token it refused."""

from __future__ import annotations

from libs.common.schemas import Sent
from services.simulator.api import SEND
from services.simulator.faults import Fault
from tests.integration.sender.conftest import HandledBy, Rig


def stable_calls(rig: Rig) -> int:
    return rig.sim.stats.tokens["stable_token"]


async def test_expiry_under_20_concurrent_sends_costs_one_refresh(
    rig: Rig, handled_by: HandledBy
) -> None:
    # Two replicas, each with a bus connection and a store client of its own (as two
    # processes): they share the token only through the store.
    one = await rig.start_sender(own_bus=True, own_store=True)
    two = await rig.start_sender(own_bus=True, own_store=True)
    warmup_user, *users = [rig.openid() for _ in range(5)]
    for user in (warmup_user, *users):
        await rig.user_message(user)
    warmup = rig.texts(warmup_user, ["first"])
    await rig.send(*warmup)
    await rig.settled(warmup)
    assert stable_calls(rig) == 1
    rig.sim.clock.advance(7200 - 60)  # one minute left: inside the 5-minute margin
    # Twenty independent replies (one decision each), so all are in flight at once.
    commands = [rig.texts(user, [f"reply {i}"])[0] for user in users for i in range(5)]
    assert len(commands) == 20
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    assert all(isinstance(o, Sent) for o in outcomes.values())
    assert stable_calls(rig) == 2
    assert rig.sim.stats.tokens["stable_rotated"] == 1
    # Both replicas handled some of the twenty, each with a stale copy of the token: one
    # refreshed it, the other took the new one from the store (or waited for it there).
    by_one, by_two = handled_by.of(one, commands), handled_by.of(two, commands)
    assert by_one, by_two
    assert by_two, by_one


async def test_a_token_wechat_stopped_accepting_is_replaced_once(
    rig: Rig, handled_by: HandledBy
) -> None:
    one = await rig.start_sender()
    two = await rig.start_sender(own_bus=True, own_store=True)
    users = [rig.openid() for _ in range(4)]
    for user in users:
        await rig.user_message(user)
    warmup = rig.texts(users[0], ["first"])
    await rig.send(*warmup)
    await rig.settled(warmup)
    # Someone forced a new token (a suspected leak); ours dies after WeChat's overlap.
    rig.sim.get_stable_token(
        grant_type="client_credential",
        appid=rig.sim.config.appid,
        secret=rig.sim.config.secret,
        force_refresh=True,
    )
    rig.sim.clock.advance(rig.sim.config.force_refresh_overlap_s + 1)
    calls = stable_calls(rig)
    commands = [cmd for user in users[1:] for cmd in rig.texts(user, ["x", "y", "z", "w"])]
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    assert all(isinstance(o, Sent) for o in outcomes.values())
    # Normal mode already returns the new token: one call for all, and nothing forced.
    assert stable_calls(rig) == calls + 1
    assert rig.sim.stats.tokens["stable_forced"] == 1  # the test's own
    assert rig.sim.stats.total(SEND, 40001) >= 1
    assert handled_by.of(one, commands)
    assert handled_by.of(two, commands)


async def test_an_injected_40001_forces_one_refresh_and_the_send_succeeds(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    warmup = rig.texts(user, ["first"])
    await rig.send(*warmup)
    await rig.settled(warmup)
    rig.fault(SEND, Fault(errcode=40001, errmsg="invalid credential, access_token is invalid"))
    [cmd] = rig.texts(user, ["after a refused token"])
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Sent)
    assert outcome.attempts == 1  # retried once inside the delivery, not through the bus
    assert rig.sim.stats.tokens["stable_same"] == 1  # normal mode returned the refused token
    assert rig.sim.stats.tokens["stable_forced"] == 1
    assert rig.received(user) == ["first", "after a refused token"]
