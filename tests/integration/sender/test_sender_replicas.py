"""Several sender replicas share one reply window per user and one rate limit.

Each replica here is what a process of its own would be: its own bus connection and its own
store client (on Redis, its own connections and its own batches of claims), so their claims
really race in the store; and each test checks that both replicas took part.
"""

from __future__ import annotations

import time

from libs.common.keys import STORE
from libs.common.schemas import Rejected, Sent
from services.simulator.api import SEND
from tests.integration.sender.conftest import HandledBy, Rig


async def test_two_replicas_racing_on_one_window_never_exceed_the_quota(
    rig: Rig, handled_by: HandledBy
) -> None:
    one = await rig.start_sender(own_bus=True, own_store=True)
    two = await rig.start_sender(own_bus=True, own_store=True)
    if rig.backend == "real":  # on memory:// one URL is one store, as one Redis would be
        assert len({id(one[STORE]), id(two[STORE]), id(rig.store)}) == 3
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
    # Both replicas claimed from the one window: the race was real. (No retries here: each
    # command was delivered exactly once, to one of them.)
    by_one, by_two = handled_by.of(one, commands), handled_by.of(two, commands)
    assert by_one, by_two
    assert by_two, by_one
    assert sorted(by_one + by_two) == sorted(c.id for c in commands)


async def test_the_rate_limit_is_shared_by_the_replicas(rig: Rig, handled_by: HandledBy) -> None:
    settings = {"send_rate_per_s": 4.0, "send_rate_burst": 1, "max_pace_wait_s": 5.0}
    one = await rig.start_sender(own_bus=True, own_store=True, **settings)
    two = await rig.start_sender(own_bus=True, own_store=True, **settings)
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
    # Both replicas sent: the bucket they paced themselves by is the shared one.
    sent_by = {
        name: {cid for cid in handled_by.of(app, commands) if isinstance(outcomes[cid], Sent)}
        for name, app in (("one", one), ("two", two))
    }
    assert sent_by["one"], sent_by
    assert sent_by["two"], sent_by
