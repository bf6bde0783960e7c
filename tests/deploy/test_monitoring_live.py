"""The dashboard cannot silently rot: a real system, real traffic, a real Prometheus.

The four services and the WeChat simulator run as separate processes on the real RabbitMQ and
Redis; the simulator's pusher drives what WeChat would send (entering the chat, texts with a
transfer keyword, an image, a retried push, an unknown MsgType, more replies than the window
allows, a badly signed push, WeChat failing a send until the command is dead-lettered) and a
client uses the media API. A Prometheus scrapes every service and RabbitMQ's plugin. Then
every PromQL expression of every dashboard panel must return data, every metric name of the
dashboard and the alert rules must be in the services' (or RabbitMQ's) exposition, and the
alert rules must load and evaluate cleanly on the real series.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from libs.common.topology import SENDER_COMMANDS
from services.simulator.config import DEMO_AES_KEY, DEMO_TOKEN
from services.simulator.images import tiny_png
from services.simulator.pusher import Pusher, new_msg_id
from tests.deploy import monitoring_files as files
from tests.deploy import monitoring_rig as rig
from tests.support import rabbit
from tests.support.redis_db import redis_database
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
]

RULES = """\
version: 1
timezone: Asia/Shanghai
rules:
  - name: welcome
    match: {event: user_enter_tempsession}
    reply: 欢迎光临
  - name: quiet-events
    match: {type: event}
    ignore: true
  - name: agent
    match:
      text: {contains: [人工]}
    reply: 正在为您转接人工客服
    transfer: true
  - name: size-chart
    match:
      text: {contains: [尺码]}
    reply:
      - 这是尺码表
      - image: chart.png
  - name: flood
    description: More replies than one user message allows (5); the sixth is refused.
    match:
      text: {contains: [flood]}
    reply: [一, 二, 三, 四, 五, 六]
  - name: picture
    match: {type: image}
    reply: 收到图片
fallback:
  reply: 收到
"""
SEND_PATH = "/cgi-bin/message/custom/send"


class Run:
    """What the module's tests share: the system, its Prometheus, and what traffic did."""

    def __init__(self, system: rig.System, prom: rig.Prometheus) -> None:
        self.system = system
        self.prom = prom
        self.users = {k: f"oMon{k}{secrets.token_hex(8)}" for k in "ABCDEFG"}


def _png(seed: bytes) -> bytes:
    # A picture no other run uploads: media keys its records by content hash.
    return tiny_png((seed[0], seed[1], seed[2]))


async def _inbox(run: Run, user: str) -> list[dict[str, Any]]:
    url = run.system.url("simulator", f"/sim/users/{run.users[user]}/inbox")
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        messages: list[dict[str, Any]] = (await response.json())["messages"]
        return messages


async def _inbox_holds(run: Run, user: str, count: int) -> None:
    await eventually(
        lambda: _inbox(run, user),
        lambda got: len(got) >= count,
        deadline_s=60,
        every_s=0.2,
        what=f"{count} messages delivered to user {user}",
    )


async def _sim(run: Run, method: str, path: str, body: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, run.system.url("simulator", path), json=body) as response,
    ):
        assert response.status == 200, await response.text()


async def drive_traffic(run: Run) -> None:
    """Everything the dashboard shows, done once."""
    system, users = run.system, run.users
    sim = system.url("simulator")
    common: dict[str, Any] = {"aes_key": DEMO_AES_KEY, "appid": system.appid, "sim": sim}
    async with Pusher(system.push_url, openid=users["A"], **common) as pusher:
        entered = await pusher.enter_session()
        assert entered.ok, entered
        assert (await pusher.text("你好")).ok
        transferred = await pusher.text("转人工")
        assert transferred.transferred, transferred
        # WeChat's retry of a push already answered: the same MsgId again.
        msg_id = new_msg_id()
        first = await pusher.text("还在吗", msg_id=msg_id)
        again = await pusher.text("还在吗", msg_id=msg_id)
        assert first.ok
        assert again.ok
        assert (await pusher.unknown_message("hologram", {"Shape": "cube"})).ok
        assert (await pusher.text("尺码", openid=users["B"])).ok
        media_id, pic_url = await pusher.register_media(_png(bytes.fromhex(system.appid[2:8])))
        image = await pusher.image(media_id=media_id, pic_url=pic_url, openid=users["C"])
        assert image.ok, image
        assert (await pusher.text("flood", openid=users["D"])).ok
    # A push signed with another token is refused (4xx) before anything is published.
    async with Pusher(
        system.push_url, openid=users["E"], token="not-" + DEMO_TOKEN, attempts=1, **common
    ) as stranger:
        assert not (await stranger.text("hi")).ok

    # Welcome, fallback, transfer reply, fallback (once for both copies of the retried
    # push), fallback for the unknown type; text + image of the size chart; the picture's
    # reply; five of the six floods.
    await _inbox_holds(run, "A", 5)
    await _inbox_holds(run, "B", 2)
    await _inbox_holds(run, "C", 1)
    await _inbox_holds(run, "D", 5)

    # WeChat fails a send once (retried, then delivered), then every attempt of the next
    # (dead-lettered). One reply at a time, so that the faults meet the send they are for.
    async with Pusher(system.push_url, openid=users["F"], **common) as pusher:
        faults: dict[str, Any] = {"path": SEND_PATH, "sequence": [{"errcode": -1}]}
        await _sim(run, "POST", "/sim/faults", faults)
        assert (await pusher.text("在吗")).ok
        await _inbox_holds(run, "F", 1)
        faults["sequence"] = [{"errcode": -1}] * SENDER_COMMANDS.max_attempts
        await _sim(run, "POST", "/sim/faults", faults)
        assert (await pusher.text("有人吗")).ok
    dlq = SENDER_COMMANDS.dlq
    await eventually(
        lambda: asyncio.to_thread(rabbit.queues, system.vhost),
        lambda queues: queues.get(dlq, (0, 0))[0] >= 1,
        deadline_s=90,
        every_s=0.5,
        what="the failing send in the dead-letter queue",
    )

    # A client of the media API (an extension): an upload, and the user's image twice
    # (the second from the cache).
    bearer = {"Authorization": f"Bearer {system.internal_token}"}
    async with aiohttp.ClientSession(headers=bearer) as http:
        upload = _png(bytes.fromhex(system.appid[8:14]))
        async with http.post(system.url("media", "/v1/media"), data=upload) as response:
            assert response.status == 200, await response.text()
        for _ in range(2):
            async with http.get(system.url("media", f"/v1/media/{media_id}")) as response:
                assert response.status == 200, await response.text()
                await response.read()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    metrics = f"http://{rig.RABBIT_METRICS}/metrics"
    try:
        await rig.fetch_text(metrics)
    except (aiohttp.ClientError, AssertionError) as exc:
        pytest.fail(
            f"RabbitMQ's Prometheus plugin does not answer at {metrics} ({exc}): `make tools`"
        )
    workdir = tmp_path_factory.mktemp("monitoring")
    (workdir / "assets").mkdir()
    (workdir / "assets" / "chart.png").write_bytes(_png(secrets.token_bytes(3)))
    rules = workdir / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    ports = rig.free_ports("simulator", *rig.SERVICES)
    vhost = rabbit.add_vhost("wxkf-monitoring")
    try:
        async with redis_database() as store_url:
            system = rig.System(
                appid="wx" + secrets.token_hex(8), vhost=vhost, ports=ports, workdir=workdir
            )
            system.env = rig.system_environment(system, store_url, rules)
            async with rig.running(system), rig.prometheus(system, workdir) as prom:
                run = Run(system, prom)
                await drive_traffic(run)
                yield run
    finally:
        rabbit.delete_vhost(vhost)


def _window(run: Run) -> str:
    """A rate window that reaches back past the first scrape: all the traffic is in it."""
    return f"{int(time.time() - run.prom.started) + 10}s"


async def test_every_dashboard_query_returns_data(run: Run) -> None:
    values = {"namespace": rig.NAMESPACE, "__rate_interval": _window(run)}
    queries = files.panel_queries()
    missing: dict[str, str] = {}

    async def all_answer() -> dict[str, str]:
        values["__rate_interval"] = _window(run)
        missing.clear()
        for query in queries:
            expr = files.substitute(query.expr, values)
            if not await run.prom.query(expr):
                missing[query.where] = expr
        return dict(missing)

    # Counters created late need two scrapes before rate() sees them: poll, then report.
    await eventually(all_answer, lambda m: not m, deadline_s=90, every_s=1.0, what="data")
    for name, selector, label in files.variable_queries():
        found = await run.prom.api(f"label/{label}/values", **{"match[]": selector})
        assert rig.NAMESPACE in found, f"variable ${name} offers {found}"


async def test_every_metric_name_is_in_the_exposition(run: Run) -> None:
    exposed: set[str] = set()
    for name in rig.SERVICES:
        exposed |= rig.exposition_names(
            await rig.fetch_text(run.system.internal_url(name, "/metrics"))
        )
    exposed |= rig.exposition_names(
        await rig.fetch_text(f"http://{rig.RABBIT_METRICS}/metrics/per-object")
    )
    used = files.dashboard_metric_names() | files.alert_metric_names()
    assert used - files.SYNTHETIC - exposed == set()
    stored = set(await run.prom.api("label/__name__/values"))
    assert used - stored == set(), "Prometheus holds no series of these"


async def test_the_alert_rules_load_and_evaluate_on_the_real_series(run: Run) -> None:
    async def evaluated() -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = (await run.prom.api("rules"))["groups"]
        return groups

    groups = await eventually(
        evaluated,
        lambda gs: bool(gs) and all(r["health"] != "unknown" for g in gs for r in g["rules"]),
        deadline_s=30,
        every_s=0.5,
        what="every rule evaluated",
    )
    assert {g["name"] for g in groups} == {g["name"] for g in files.rules()["groups"]}
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
    # The broker's series carry the queue names the rules expect.
    dead = next(r for r in files.alert_rules() if r["alert"] == "WxkfDeadLettersPresent")

    async def dead_letter_queues() -> set[str]:
        return {s["metric"]["queue"] for s in await run.prom.query(dead["expr"])}

    # The broker's plugin refreshes its queue figures every few seconds, and Prometheus
    # scrapes them after that: the dead letter shows a scrape or two after it landed.
    await eventually(
        dead_letter_queues,
        lambda found: "wxkf.sender.commands.dlq" in found,
        deadline_s=30,
        every_s=0.5,
        what="the dead letter in the broker's series",
    )
    work = await run.prom.query('rabbitmq_queue_consumers{queue=~"wxkf\\\\.[a-z]+\\\\.[a-z]+"} > 0')
    assert {s["metric"]["queue"] for s in work} == {
        "wxkf.router.events",
        "wxkf.sender.commands",
        "wxkf.sender.windows",
        "wxkf.media.archive",
    }


SEEN = (
    # What each step of the traffic leaves behind, in the series the panels group by.
    'wxkf_ingress_pushes_total{type="event.user_enter_tempsession", outcome="published"}',
    'wxkf_ingress_pushes_total{type="msg.other", outcome="published"}',
    'wxkf_ingress_pushes_total{type="msg.text", outcome="duplicate"}',
    'wxkf_ingress_dedupe_hits_total{state="done"}',
    'wxkf_ingress_decisions_total{result="transfer"}',
    'wxkf_ingress_bad_input_total{reason=~".+"}',
    'wxkf_http_requests_total{service="ingress", status=~"4.."}',
    'wxkf_router_decisions_total{rule="agent", action="transfer"}',
    'wxkf_router_decisions_total{rule="flood"}',
    'wxkf_router_commands_total{msgtype="image"}',
    'wxkf_sender_quota_decisions_total{decision="quota_exhausted"}',
    'wxkf_sender_commands_total{msgtype="text", outcome="rejected"}',
    'wxkf_wechat_api_calls_total{service="sender", api="send", result="-1"}',
    'wxkf_wechat_api_calls_total{service="sender", api="send", result="0"}',
    'wxkf_sender_retries_total{reason=~".+"}',
    'wxkf_sender_dead_letters_total{msgtype="text"}',
    'wxkf_bus_deliveries_total{queue="wxkf.sender.commands", outcome="retry"}',
    'wxkf_bus_deliveries_total{queue="wxkf.sender.commands", outcome="dead_letter"}',
    'wxkf_wechat_token_refreshes_total{service=~"sender|media", outcome="ok"}',
    'wxkf_media_uploads_total{outcome="uploaded"}',
    'wxkf_media_downloads_total{outcome="ok"}',
    'wxkf_media_downloads_total{outcome="cached"}',
    'wxkf_media_archived_total{outcome="archived"}',
    'wxkf_media_bytes_total{direction="wechat_out"}',
    'rabbitmq_queue_messages{queue="wxkf.sender.commands.dlq"} >= 1',
)


async def test_the_traffic_shows_in_the_series_the_panels_read(run: Run) -> None:
    async def absent() -> dict[str, list[dict[str, str]]]:
        missing = {}
        for expr in SEEN:
            if not await run.prom.query(expr):
                name = files.selectors(expr)[0][0]
                missing[expr] = [s["metric"] for s in await run.prom.query(name)]
        return missing

    await eventually(absent, lambda m: not m, deadline_s=60, every_s=1.0, what="every series")
