"""The load generator: rate and concurrency modes, error counts, latency percentiles, progress
and what became of the replies at the simulator."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sim_helpers import Ingress, ingress_app, text

from services.simulator.app import create_app, running
from services.simulator.config import DEMO_AES_KEY
from services.simulator.errors import ApiError
from services.simulator.load import Progress, load_openids, percentiles, run_load
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
    ids = load_openids(100, "a1b2c3")
    assert len(set(ids)) == 100
    assert all(len(i) == 28 and i.startswith("oWxkfLoada1b2c3") for i in ids)


async def test_concurrency_mode_counts_outcomes_and_errors(state: SimState) -> None:
    endpoint = Ingress()
    endpoint.script = ["500", "garbage"]
    async with TestServer(ingress_app(endpoint)) as server:
        url = str(server.make_url("/wechat"))
        async with Pusher(url, aes_key=DEMO_AES_KEY, sim=state, attempts=1) as pusher:
            report = await run_load(pusher, users=3, concurrency=2, duration_s=0.3, wait_s=0)
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
            report = await run_load(pusher, users=5, rate=50, duration_s=0.2, wait_s=0)
    # Pushes are scheduled at 0, 20, 40, ... 180 ms: 10 in 0.2 s, whatever the machine.
    assert report.started == 10
    assert report.completed == 10
    assert report.outcomes == {"success": 10}
    assert report.ack_latency_ms is not None
    assert report.ack_latency_ms.max >= report.ack_latency_ms.p50 > 0
    assert "(target 50/s)" in report.lines()[0]
    assert report.lines()[3].startswith("ACK latency ms: p50 ")
    # Nobody answers these pushes: every reply is still pending when the (zero) wait ends.
    assert report.replies is not None
    assert (report.replies.delivered, report.replies.pending) == (0, 10)
    assert not report.ok


async def test_unreachable_target_reports_nothing_accepted() -> None:
    async with Pusher("http://127.0.0.1:9/wechat", attempts=1) as pusher:
        report = await run_load(pusher, users=1, rate=20, duration_s=0.1)
    assert report.accepted == 0
    assert report.ack_latency_ms is None
    assert report.lines()[3] == "ACK latency ms: n/a (nothing accepted)"
    assert report.lines()[4].startswith("replies at the simulator: not counted (give --sim URL")
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
        {"rate": 1.0, "wait_s": -1},
    ],
)
async def test_bad_load_parameters(kw: dict[str, float]) -> None:
    args = {"users": 1, "duration_s": 1.0, **kw}
    async with Pusher("http://127.0.0.1:9/wechat") as pusher:
        with pytest.raises(ValueError, match=r"give exactly one|must be"):
            await run_load(pusher, **args)  # type: ignore[arg-type]


class Replying(Ingress):
    """Answers every push, then plays wxkf: replies to one push in three, replies to another
    after closing the user's window (WeChat refuses it), and leaves the third unanswered."""

    def __init__(self, sim: SimState) -> None:
        super().__init__()
        self.sim = sim

    async def handle(self, request: web.Request) -> web.StreamResponse:
        answer = await super().handle(request)
        n = len(self.opened)
        openid = self.opened[-1].message.from_user
        if n % 3 == 2:
            self.sim.users[openid].grants.clear()
        if n % 3 != 0:
            with contextlib.suppress(ApiError):  # counted by the simulator; that is the point
                self.sim.send(msgspec.json.encode(text(openid, f"reply {n}")))
        return answer


async def test_replies_are_counted_at_the_simulator_delivered_refused_and_pending(
    state: SimState,
) -> None:
    endpoint = Replying(state)
    heard: list[Progress] = []
    async with (
        running(create_app(state=state)) as sim_url,
        TestServer(ingress_app(endpoint)) as server,
    ):
        url = str(server.make_url("/wechat"))
        async with Pusher(url, aes_key=DEMO_AES_KEY, sim=sim_url, attempts=1) as pusher:
            report = await run_load(
                pusher,
                users=4,
                rate=60,
                duration_s=0.1,
                wait_s=0.3,
                on_progress=heard.append,
                progress_every_s=0.1,
            )
    assert report.accepted == 6
    assert report.replies is not None
    assert report.replies.delivered == 2
    assert report.replies.refused == {45015: 2}
    assert report.replies.pending == 2
    assert report.replies.waited_s >= 0.3  # the replies never came: it waited them out
    assert not report.ok
    lines = report.lines()
    assert lines[4].startswith(
        "replies at the simulator: 2 delivered, 2 refused, 2 still pending of 6 expected"
    )
    assert lines[5].startswith("  refused 45015 x2: ")
    assert heard[-1].replies is not None  # the wait for replies is shown too


async def test_progress_is_heard_while_it_runs(state: SimState) -> None:
    endpoint = Ingress()
    heard: list[Progress] = []
    async with TestServer(ingress_app(endpoint)) as server:
        url = str(server.make_url("/wechat"))
        async with Pusher(url, aes_key=DEMO_AES_KEY, sim=state, attempts=1) as pusher:
            await run_load(
                pusher,
                users=2,
                rate=20,
                duration_s=0.3,
                wait_s=0,
                on_progress=heard.append,
                progress_every_s=0.1,
            )
    assert len(heard) >= 1
    first = heard[0]
    assert 0 < first.begun <= 6
    assert first.line().strip().startswith(f"{first.elapsed_s:.1f} s: {first.begun} pushes begun")


def test_replies_to_pushes_that_timed_out_here_are_told_apart() -> None:
    from services.simulator.load import Replies

    replies = Replies(expected=2, delivered=3, refused={45047: 1}, waited_s=0.0)
    assert (replies.pending, replies.beyond) == (0, 2)
    lines = replies.lines()
    assert lines[1].startswith("  2 of them answer pushes whose answer came too late here")
    assert lines[2].startswith("  refused 45047 x1: ")
