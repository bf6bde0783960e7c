"""Faults on the real RabbitMQ and Redis: never ``success`` for an event neither confirmed nor
kept, and after recovery every push on the bus once (WeChat's retries bring back what failed).

The broker faults here run without the spool (``WXKF_SPOOL_LIMIT=0``), so that every push the
broker does not confirm is refused; tests/faults/ covers the spool on real processes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from libs.common.bus import Bus, Delivery
from libs.common.schemas import AnyMessage
from libs.common.topology import EVENTS, QueueSpec
from libs.common.wechat import replies
from tests.integration.ingress.harness import (
    Backend,
    Push,
    Responder,
    Tap,
    counts,
    ingress,
    internal_of,
    real_backend,
    settings,
    text_message,
)
from tests.support import rabbit
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

BURST = 60
PUBLISH_TIMEOUT_S = 1.0


@pytest.fixture
async def backend(rabbit_vhost: str) -> AsyncIterator[Backend]:
    chosen = real_backend(rabbit_vhost)
    try:
        yield chosen
    finally:
        await chosen.close()


@pytest.fixture
async def broker_proxy() -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy(rabbit.HOST, rabbit.PORT).start()
    try:
        yield proxy
    finally:
        await proxy.close()


class Collector:
    """Every event id that reached the bus so far, read continuously on a direct link."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.ids: set[str] = set()
        self.spec = QueueSpec(
            name=f"test.ingress.collector.{uuid.uuid4().hex[:10]}",
            exchange=EVENTS,
            bindings=("msg.#", "event.#"),
            max_attempts=1,
        )

    async def start(self) -> Collector:
        await self.bus.consume(self.spec, self.collect)
        return self

    async def collect(self, msg: AnyMessage, delivery: Delivery) -> None:
        self.ids.add(msg.id)


class WeChat:
    """Sends each push until it is answered 200, as WeChat's retries do, and keeps the log."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.answers: dict[str, list[int | None]] = {}
        self.succeeded: set[str] = set()

    def failures(self) -> int:
        return sum(1 for got in self.answers.values() for status in got if status != 200)

    async def deliver(self, push: Push, *, after_s: float, deadline_s: float = 90.0) -> None:
        await asyncio.sleep(after_s)  # spreads the burst out over time
        log = self.answers.setdefault(push.event_id, [])
        end = time.monotonic() + deadline_s
        while True:
            status, body = await push.send(self.session, self.url, timeout_s=5.0)
            log.append(status)
            if status == 200:
                assert body == replies.SUCCESS
                self.succeeded.add(push.event_id)
                return
            assert status in (None, 503), (status, body)
            assert time.monotonic() < end, f"push never accepted: {log}"
            await asyncio.sleep(0.25)  # WeChat's pause before it sends the push again


async def burst_with_fault(
    backend: Backend,
    *,
    ingress_bus: Bus,
    fault: Callable[[], Awaitable[None]],
    recover: Callable[[], Awaitable[None]],
    refusals: bool,
) -> None:
    """A burst of pushes with ``fault`` in its middle; ``refusals``: the fault lasts long
    enough that some pushes must be refused (a link that comes back within the publish
    timeout may refuse none)."""
    conf = settings(backend, decision_budget_ms=500, spool_limit=0)
    direct = await backend.bus()
    tap = await Tap(backend, direct).start()
    collector = await Collector(direct).start()
    await Responder(direct).start()
    pushes = [
        Push(conf, text_message(f"burst {i}", openid=f"o-burst-{i % 7}")) for i in range(BURST)
    ]
    async with (
        ingress(backend, conf, bus=ingress_bus) as url,
        aiohttp.ClientSession() as session,
    ):
        wechat = WeChat(session, url)
        burst = asyncio.gather(*(wechat.deliver(p, after_s=i * 0.03) for i, p in enumerate(pushes)))
        await eventually(lambda: len(wechat.succeeded), lambda n: n >= BURST // 4, what="part")
        await fault()
        if refusals:
            await eventually(wechat.failures, lambda n: n >= 1, what="a refusal during the fault")
        # While the broker is out of reach, everything answered success is on the bus.
        answered = set(wechat.succeeded)
        await eventually(
            lambda: answered - collector.ids, lambda missing: not missing, what="acked events"
        )
        await recover()
        await burst
    assert wechat.succeeded == {p.event_id for p in pushes}
    events = await tap.events(at_least=BURST)
    seen = counts(events)
    assert set(seen) == {p.event_id for p in pushes}
    # A publish whose confirm was lost with the link may have reached the broker: its retry
    # publishes the same event id again, for consumers to drop. Only such pushes may repeat.
    repeated = {eid for eid, n in seen.items() if n > 1}
    refused = {eid for eid, got in wechat.answers.items() if any(s != 200 for s in got)}
    assert repeated <= refused, (repeated, refused)
    print(f"burst of {BURST}: {len(refused)} refused at least once, {len(repeated)} repeated")


async def test_broker_link_cut_during_a_burst(backend: Backend, broker_proxy: TcpProxy) -> None:
    assert backend.vhost is not None
    url = rabbit.url(backend.vhost, port=broker_proxy.port)
    ingress_bus = await backend.bus(url, publish_timeout_s=PUBLISH_TIMEOUT_S)

    async def fault() -> None:
        broker_proxy.down()

    async def recover() -> None:
        broker_proxy.up()

    await burst_with_fault(
        backend, ingress_bus=ingress_bus, fault=fault, recover=recover, refusals=True
    )


async def test_connections_closed_by_the_broker_during_a_burst(backend: Backend) -> None:
    assert backend.vhost is not None
    vhost = backend.vhost
    ingress_bus = await backend.bus(publish_timeout_s=PUBLISH_TIMEOUT_S)

    async def fault() -> None:
        closed = await asyncio.to_thread(rabbit.close_connections, vhost)
        assert closed >= 2

    async def recover() -> None:
        return  # the connections come back by themselves

    await burst_with_fault(
        backend, ingress_bus=ingress_bus, fault=fault, recover=recover, refusals=False
    )


async def test_unconfirmed_publish_is_503_then_the_retry_publishes_once(
    backend: Backend, broker_proxy: TcpProxy
) -> None:
    assert backend.vhost is not None
    url = rabbit.url(backend.vhost, port=broker_proxy.port)
    ingress_bus = await backend.bus(url, publish_timeout_s=PUBLISH_TIMEOUT_S)
    conf = settings(backend, spool_limit=0)
    direct = await backend.bus()
    tap = await Tap(backend, direct).start()
    await Responder(direct).start()
    push = Push(conf, text_message("into the void"))
    async with (
        ingress(backend, conf, bus=ingress_bus) as ingress_url,
        aiohttp.ClientSession() as session,
    ):
        broker_proxy.blackhole()  # the broker takes the publish and never confirms it
        status, body = await push.send(session, ingress_url)
        assert (status, body) == (503, b"unconfirmed")
        broker_proxy.cut()
        broker_proxy.up()
        answers: list[tuple[int | None, bytes]] = []
        while not answers or answers[-1][0] != 200:
            answers.append(await push.send(session, ingress_url))
            assert len(answers) < 100, answers
            if answers[-1][0] != 200:
                await asyncio.sleep(0.25)  # WeChat's pause before it sends the push again
    assert answers[-1] == (200, replies.SUCCESS)
    events = await tap.events(at_least=1)
    assert set(counts(events)) == {push.event_id}


async def test_with_the_store_down_a_push_is_published_undeduplicated(backend: Backend) -> None:
    proxy = await TcpProxy("127.0.0.1", 6379).start()
    try:
        store = await backend.store(f"redis://127.0.0.1:{proxy.port}/0")
        conf = settings(backend)
        direct = await backend.bus()
        tap = await Tap(backend, direct).start()
        await Responder(direct).start()
        push = Push(conf, text_message("store down"))
        async with (
            ingress(backend, conf, store=store) as url,
            aiohttp.ClientSession() as session,
        ):
            proxy.down()
            assert await push.send(session, url) == (200, replies.SUCCESS)
            # Still ready: pushes are published, without the dedupe the store gives.
            async with session.get(internal_of(url) + "/readyz") as resp:
                assert resp.status == 200
                assert (await resp.json())["degraded"] == {"store": "StoreError"}
            # WeChat's retry of a push it did not hear answered publishes it again, with the
            # same event id, for the consumers to drop.
            assert await push.send(session, url) == (200, replies.SUCCESS)
            proxy.up()
            assert await push.send(session, url) == (200, replies.SUCCESS)
        events = await tap.events(at_least=3)
        assert counts(events) == {push.event_id: 3}
    finally:
        await proxy.close()
