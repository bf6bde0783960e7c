"""Conservation: every push accounted for, per user, through a long run on a WeChat whose
API fails now and then, with two replicas of every service.

For each user: pushes WeChat delivered = events on the bus = decisions = replies delivered +
failures reported, and no reply twice. The API fails 5 % of sends in every way it does
(``-1`` busy, ``45009`` quota, a 503 from its gateway, a connection dropped before or after
the message was delivered), so the counts cover retries, reported failures and ambiguous
sends alongside the replies.

``make test`` runs 2,000 pushes; ``make soak`` runs 20,000 from 2,000 users
(``WXKF_SOAK_PUSHES``, ``WXKF_SOAK_RATE``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from libs.common.wechat.api import SEND_PATH
from services.simulator.faults import Fault, FaultRule
from tests.faults.rig import counts, rig
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.faults

PUSHES = int(os.environ.get("WXKF_SOAK_PUSHES", "2000"))
RATE = float(os.environ.get("WXKF_SOAK_RATE", "40"))
PER_USER = 10

API_FAULTS = FaultRule(
    path=SEND_PATH,
    rate=0.05,
    seed=15,
    outcomes=[
        Fault(errcode=-1),
        Fault(errcode=45009),
        Fault(status=503),
        Fault(drop=True),
        Fault(accept_then_drop=True),
    ],
)


async def test_every_push_is_accounted_for_per_user(
    tmp_path: Path, broker_url: str, redis_server: RedisServer
) -> None:
    async with rig(
        tmp_path,
        broker_url=broker_url,
        store_url=redis_server.url(),
        services={"ingress": 2, "router": 2, "sender": 2},
        api_faults=API_FAULTS,
    ) as system:
        users = system.users(max(1, PUSHES // PER_USER))
        await system.burst(users, per_user=PER_USER, rate=RATE)
        report = await system.settled(deadline_s=180)
        calls = dict(system.sim.stats.calls[SEND_PATH])
        counts(f"\nsoak of {report.pushes} pushes at {RATE:g}/s: {report.line()} sends={calls}")

        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.duplicates == 0
        assert report.gave_up == 0
        assert system.sim.stats.faults > 0
        assert report.failures > 0, "a dropped send is reported, not lost"
        unbalanced = {
            user: dict(c)
            for user, c in report.per_user.items()
            if not (
                c["pushes"] - c["gave_up"]
                == c["events"]
                == c["decisions"]
                == c["replies"] + c["failures"]
            )
        }
        assert unbalanced == {}
        assert report.events == report.pushes == report.decisions
        assert report.replies + report.failures == report.events
