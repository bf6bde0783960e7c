"""The load generator: rate and concurrency modes, error counts, latency percentiles."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer
from sim_helpers import Ingress, ingress_app

from services.simulator.config import DEMO_AES_KEY
from services.simulator.load import load_openids, percentiles, run_load
from services.simulator.pusher import Pusher
from services.simulator.state import SimState


def test_percentiles_nearest_rank() -> None:
    p = percentiles([float(x) for x in range(1, 101)])
    assert p is not None
    assert (p.p50, p.p90, p.p99, p.max) == (50.0, 90.0, 99.0, 100.0)
    one = percentiles([3.0])
    assert one is not None
    assert (one.p50, one.max) == (3.0, 3.0)
    assert percentiles([]) is None


def test_load_openids_are_distinct_and_openid_shaped() -> None:
    ids = load_openids(100)
    assert len(set(ids)) == 100
    assert all(len(i) == 28 for i in ids)


async def test_concurrency_mode_counts_outcomes_and_errors(state: SimState) -> None:
    endpoint = Ingress()
    endpoint.script = ["500", "garbage"]
    async with TestServer(ingress_app(endpoint)) as server:
        url = str(server.make_url("/wechat"))
        async with Pusher(url, aes_key=DEMO_AES_KEY, sim=state, attempts=1) as pusher:
            report = await run_load(pusher, users=3, concurrency=2, duration_s=0.3)
    assert report.completed == report.started == len(endpoint.opened)
    assert report.completed >= 2
    assert report.errors == {"http_500": 1, "invalid": 1}
    assert report.outcomes["failed"] == 1
    assert report.outcomes["invalid"] == 1
    assert report.outcomes.get("success", 0) == report.completed - 2
    assert report.accepted == report.completed - 2
    assert len({o.message.from_user for o in endpoint.opened}) == min(3, report.completed)
    assert report.skipped == 0
    lines = report.lines()
    assert lines[0].startswith(f"pushes: {report.completed} completed")
    assert "at concurrency 2" in lines[0]
    assert lines[2] == "errors: http_500=1, invalid=1"


async def test_rate_mode_begins_the_planned_number(state: SimState) -> None:
    endpoint = Ingress()
    async with TestServer(ingress_app(endpoint)) as server:
        url = str(server.make_url("/wechat"))
        async with Pusher(url, aes_key=DEMO_AES_KEY, sim=state, attempts=1) as pusher:
            report = await run_load(pusher, users=5, rate=50, duration_s=0.2)
    # Pushes are scheduled at 0, 20, 40, ... 180 ms: 10 in 0.2 s, whatever the machine.
    assert report.started == 10
    assert report.completed == 10
    assert report.outcomes == {"success": 10}
    assert report.ack_latency_ms is not None
    assert report.ack_latency_ms.max >= report.ack_latency_ms.p50 > 0
    assert "(target 50/s)" in report.lines()[0]
    assert report.lines()[-1].startswith("ACK latency ms: p50 ")


async def test_unreachable_target_reports_nothing_accepted() -> None:
    async with Pusher("http://127.0.0.1:9/wechat", attempts=1) as pusher:
        report = await run_load(pusher, users=1, rate=20, duration_s=0.1)
    assert report.accepted == 0
    assert report.ack_latency_ms is None
    assert report.lines()[-1] == "ACK latency ms: n/a (nothing accepted)"
    assert all(k.startswith("connection: ") for k in report.errors)


@pytest.mark.parametrize(
    "kw",
    [
        {"rate": 1.0, "concurrency": 1},
        {},
        {"rate": 0.0},
        {"concurrency": 0},
        {"rate": 1.0, "users": 0},
        {"rate": 1.0, "duration_s": 0},
    ],
)
async def test_bad_load_parameters(kw: dict[str, float]) -> None:
    args = {"users": 1, "duration_s": 1.0, **kw}
    async with Pusher("http://127.0.0.1:9/wechat") as pusher:
        with pytest.raises(ValueError, match=r"give exactly one|must be"):
            await run_load(pusher, **args)  # type: ignore[arg-type]
