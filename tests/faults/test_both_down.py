"""The broker and Redis down together, for longer than WeChat's retries: the one case where
a push is lost, and it must be lost loudly.

With neither the broker to publish to nor the spool in Redis to keep the event in, ingress
answers 503; WeChat tries each push four times over about 15 s and then drops it. Every
such answer is counted in ``wxkf_ingress_pushes_total`` under an outcome that the
``WxkfPushesRefused`` alert watches, and everything accepted before or after is answered
once.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml

from tests.faults.rig import ROOT, counts, rig
from tests.support.rabbit_node import RabbitNode
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.faults

OUTAGE_S = 20
"""Longer than WeChat's four attempts 5 s apart."""


def refused_outcomes() -> re.Pattern[str]:
    """The outcomes of ``wxkf_ingress_pushes_total`` that ``WxkfPushesRefused`` watches."""
    rules = yaml.safe_load((ROOT / "deploy/prometheus/wxkf-alerts.yaml").read_text())
    (expr,) = [
        rule["expr"]
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "WxkfPushesRefused"
    ]
    found = re.search(r'wxkf_ingress_pushes_total\{outcome=~"([^"]+)"\}', expr)
    assert found, expr
    return re.compile(found.group(1))


async def test_pushes_that_nothing_could_keep_are_refused_and_counted(
    tmp_path: Path, broker: RabbitNode, broker_url: str, redis_server: RedisServer
) -> None:
    async with rig(tmp_path, broker_url=broker_url, store_url=redis_server.url()) as system:
        users = system.users(40)
        load = asyncio.create_task(system.burst(users, per_user=3, rate=3))
        await asyncio.sleep(4)
        redis_server.pause()
        await asyncio.to_thread(broker.stop_app)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(broker.start_app)
        redis_server.resume()
        await load
        report = await system.settled(deadline_s=120)

        watched = refused_outcomes()
        metrics = await system.metrics(system.live("ingress")[0])
        counted: dict[str, float] = {}
        for key, value in metrics.items():
            found = re.fullmatch(r'wxkf_ingress_pushes_total\{.*outcome="([a-z_]+)".*\}', key)
            if found:
                counted[found.group(1)] = counted.get(found.group(1), 0) + value
        refusals = sum(v for outcome, v in counted.items() if watched.fullmatch(outcome))
        answered_503 = sum(
            1 for result in system.tally.pushes.values() for a in result.answers if a.status == 503
        )
        counts(
            f"\nbroker and Redis down {OUTAGE_S} s: {report.line()}; 503 answers "
            f"{answered_503}, counted {counted}"
        )
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.duplicates == 0
        assert report.gave_up > 0, "an outage longer than WeChat's retries drops pushes"
        # Every push WeChat delivered is answered; one it gave up on may be too, when a
        # step cut short by the answer's bound had published it after all.
        assert report.replies >= report.pushes - report.gave_up, report.refused[:5]
        # Each push WeChat gave up on was refused four times, each refusal counted where the
        # alert looks.
        assert refusals >= 4 * report.gave_up
        assert refusals <= answered_503
