"""Several sender replicas share one reply window per user and one rate limit."""

from __future__ import annotations

import time

from libs.common.schemas import Rejected, Sent
from services.simulator.api import SEND
from tests.integration.sender.conftest import Rig


async def test_two_replicas_racing_on_one_window_never_exceed_the_quota(rig: Rig) -> None:
    await rig.start_sender(own_bus=True)
    await rig.start_sender(own_bus=True)
    user = rig.openid()
    await rig.user_message(user)
    # Twelve independent replies to one user, spread over both replicas at once.
    commands = [rig.texts(user, [f"reply {i}"])[0] for i in range(12)]
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    sent = [o for o in outcomes.values() if isinstance(o, Sent)]
    rejected = [o for o in outcomes.values() if isinstance(o, Rejected)]
    assert len(sent) == 5
    assert len(rejected) == 7
    assert {o.reason for o in rejected} == {"quota_exhausted"}
    assert len(rig.received(user)) == 5
    assert rig.sim.stats.total(SEND, 45047) == 0  # WeChat never had to refuse one


async def test_the_rate_limit_is_shared_by_the_replicas(rig: Rig) -> None:
    settings = {"send_rate_per_s": 4.0, "send_rate_burst": 1, "max_pace_wait_s": 5.0}
    await rig.start_sender(own_bus=True, **settings)
    await rig.start_sender(own_bus=True, **settings)
    users = [rig.openid() for _ in range(3)]
    for user in users:
        await rig.user_message(user)
    commands = [rig.texts(user, [f"r{i}"])[0] for user in users for i in range(3)]
    started = time.monotonic()
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    elapsed = time.monotonic() - started
    assert all(isinstance(o, Sent) for o in outcomes.values())
    # Nine calls at 4 a second after a burst of one cannot take less than 2 s, however fast
    # the machine (a lower bound only: a slow machine only makes it longer).
    assert elapsed >= (len(commands) - 1) / 4.0
