"""The sender against the WeChat simulator, on ``memory://`` and on RabbitMQ + Redis.

Each test gets a fresh simulator (its clock stands still unless the test moves it), a bus
(a fresh memory broker, or the RabbitMQ vhost of its test module, deleted after) and a store
of its own (a memory URL, or a unique Redis key prefix, removed after), so runs repeat and
overlap on the shared broker and Redis. On RabbitMQ the tests of one module share the
sender's queues, so each test looks only at its own users and commands.

The rig publishes what ingress and the router would (user-message events, send commands)
and collects the sender's outcome facts from a queue of its own bound to ``outbound.#``.

A replica started with ``own_bus`` / ``own_store`` has connections of its own, as another
process would: a RabbitMQ connection, and a Redis client of its own under the same prefix
(on ``memory://`` the same URL, which is the one store of this process). ``handled_by`` says
which replica handled which delivery.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from libs.common import bus as bus_lib
from libs.common.bus import Bus, Delivery, Handler
from libs.common.bus.memory import MemoryBus
from libs.common.schemas import (
    AnyMessage,
    Outcome,
    SendCommand,
    SendText,
    SessionEntered,
    TextReceived,
)
from libs.common.settings import load
from libs.common.store import Store
from libs.common.store import connect as connect_store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from libs.common.topology import EVENTS, QueueSpec
from services.sender import handlers
from services.sender.app import create_app
from services.sender.keys import SENDER
from services.sender.settings import SenderSettings
from services.simulator.app import create_app as create_sim
from services.simulator.app import running
from services.simulator.clock import SimClock
from services.simulator.config import DEMO_APPID, DEMO_GH_ID, DEMO_SECRET, SimConfig
from services.simulator.faults import Fault, FaultRule
from services.simulator.state import SimState
from services.simulator.users import Delivered
from tests.support import rabbit
from tests.support.metrics import sample
from tests.support.redis_keys import REDIS_URL, delete_prefixed, unique_prefix
from tests.support.waiting import eventually

SIM_START = 1_767_225_600.0

FAST = {
    # Retries in tenths of a second instead of seconds: each delay is a delay queue.
    "retry_base_s": 0.05,
    "window_grace_s": 0.0,
    "send_rate_per_s": 0.0,
    "wechat_timeout_s": 1.0,
    "rate_limited_pause_s": 0.1,
}


def grants() -> float:
    total = 0.0
    for kind in ("message", "enter"):
        total += sample("wxkf_sender_window_grants_total", kind=kind)
    return total


@dataclass
class Rig:
    """The simulated WeChat, the bus and store the senders share, and what they reported."""

    sim: SimState
    sim_url: str
    bus: Bus
    store: Store
    backend: str
    bus_url: str
    """Where ``wxkf`` commands find the bus (memory:// only inside this process)."""
    facts: list[Outcome] = field(default_factory=list)
    make_bus: Callable[[], Awaitable[Bus]] | None = None
    make_store: Callable[[], Awaitable[Store]] | None = None
    servers: list[TestServer] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- senders ---------------------------------------------------------------------------------

    def settings(self, **overrides: Any) -> SenderSettings:
        values = {"wechat_api_base": self.sim_url, **FAST, **overrides}
        return load(SenderSettings, {}, appid=DEMO_APPID, app_secret=DEMO_SECRET, **values)

    async def start_sender(
        self, *, own_bus: bool = False, own_store: bool = False, **overrides: Any
    ) -> web.Application:
        """A sender replica; ``own_bus`` / ``own_store``: with a bus connection / a store
        client of its own (another process), else the rig's."""
        bus, store = self.bus, self.store
        if own_bus:
            assert self.make_bus is not None
            bus = await self.make_bus()
        if own_store:
            assert self.make_store is not None
            store = await self.make_store()
        app = create_app(self.settings(**overrides), bus=bus, store=store, clock=self.sim.clock.now)
        server = TestServer(app)
        await server.start_server()
        self.servers.append(server)
        return app

    # -- what ingress and the router would publish ----------------------------------------------

    def openid(self) -> str:
        return f"oTest{uuid.uuid4().hex[:20]}"

    async def user_message(self, openid: str, at: float | None = None) -> None:
        """The user wrote to us: WeChat opens its window, ingress publishes the event, and the
        sender has recorded the window when this returns."""
        at = self.sim.clock.now() if at is None else at
        self.sim.user_message(openid, at)
        await self._publish_event(
            TextReceived(
                appid=DEMO_APPID,
                openid=openid,
                correlation_id=uuid.uuid4().hex,
                to_user=DEMO_GH_ID,
                create_time=int(at),
                msg_id=2**60 + next(self._seq),
                content="hello",
            )
        )

    async def entered(self, openid: str, at: float | None = None) -> None:
        at = self.sim.clock.now() if at is None else at
        self.sim.user_entered(openid, at)
        await self._publish_event(
            SessionEntered(
                appid=DEMO_APPID,
                openid=openid,
                correlation_id=uuid.uuid4().hex,
                to_user=DEMO_GH_ID,
                create_time=int(at),
            )
        )

    async def _publish_event(self, event: AnyMessage) -> None:
        before = grants()
        await self.bus.publish(event)
        await eventually(grants, lambda n: n > before, what="the sender recorded the window")

    async def send(self, *commands: SendCommand) -> None:
        for cmd in commands:
            await self.bus.publish(cmd)

    def texts(
        self, openid: str, contents: list[str], *, cause: str | None = None
    ) -> list[SendText]:
        """The commands of one decision: ordered by ``seq`` within one cause."""
        cause_id = cause or uuid.uuid4().hex
        return [
            SendText(
                appid=DEMO_APPID,
                openid=openid,
                correlation_id=cause_id,
                cause_id=cause_id,
                seq=i,
                total=len(contents),
                content=content,
            )
            for i, content in enumerate(contents)
        ]

    # -- what happened -------------------------------------------------------------------------

    def fault(self, path: str, *faults: Fault) -> None:
        self.sim.faults.add(FaultRule(path=path, sequence=list(faults)))

    def inbox(self, openid: str) -> list[Delivered]:
        return self.sim.inbox(openid)

    def received(self, openid: str) -> list[str]:
        return [str(d.body.get("content", d.msgtype)) for d in self.sim.inbox(openid)]

    def outcomes(self, openid: str) -> list[Outcome]:
        return [f for f in self.facts if f.openid == openid]

    async def settled(self, commands: list[SendCommand], **kw: Any) -> dict[str, Outcome]:
        """Wait until every command has an outcome fact; the last one of each by id."""
        ids = {c.id for c in commands}

        def seen() -> dict[str, Outcome]:
            return {f.command_id: f for f in self.facts if f.command_id in ids}

        return await eventually(
            seen, lambda got: set(got) == ids, what=f"outcomes of {len(ids)} commands", **kw
        )


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimState, str]]:
    state = SimState(SimConfig(), clock=SimClock(start=SIM_START, ticking=False))
    async with running(create_sim(state=state)) as url:
        yield state, url


@pytest.fixture
async def rig(vhost: str | None, sim: tuple[SimState, str]) -> AsyncIterator[Rig]:
    state, sim_url = sim
    prefix = unique_prefix()
    buses: list[Bus] = []
    stores: list[Store] = []
    store: Store
    if vhost is None:
        memory = MemoryBus.fresh()
        bus_url = "memory://"
        store_url = f"memory://sender-test-{uuid.uuid4().hex}"
        store = MemoryStore.shared(store_url, prefix=prefix)

        async def make_bus() -> Bus:
            client = memory.client()
            buses.append(client)
            return client

    else:
        amqp_url = bus_url = rabbit.url(vhost)
        store_url = REDIS_URL
        store = await RedisStore.connect(REDIS_URL, prefix=prefix)

        async def make_bus() -> Bus:
            client = await bus_lib.connect(amqp_url)
            buses.append(client)
            return client

    async def make_store() -> Store:
        # What a replica in a process of its own opens: a client of its own, same prefix.
        client = await connect_store(store_url, prefix=prefix)
        stores.append(client)
        return client

    bus = await make_bus()
    rig = Rig(
        sim=state,
        sim_url=sim_url,
        bus=bus,
        store=store,
        backend="memory" if vhost is None else "real",
        bus_url=bus_url,
        make_bus=make_bus,
        make_store=make_store,
    )
    outcomes = QueueSpec(
        name=f"test.outcomes.{uuid.uuid4().hex[:8]}",
        exchange=EVENTS,
        bindings=("outbound.#",),
        max_attempts=2,
    )
    await bus.declare()
    await bus.declare([outcomes])

    async def collect(msg: AnyMessage, delivery: Delivery) -> None:
        assert isinstance(msg, Outcome)
        rig.facts.append(msg)

    await bus.consume(outcomes, collect)
    try:
        yield rig
    finally:
        for server in reversed(rig.servers):
            await server.close()
        for client in reversed(buses):
            await client.stop_consuming()
            await client.close()
        for extra in reversed(stores):
            await extra.close()
        await store.close()
        if vhost is None:
            MemoryStore.forget(store_url)
        else:
            await delete_prefixed(prefix)


async def dead_ids(bus: Bus, queue: str) -> list[str]:
    """The message ids in a work queue's dead-letter queue (other tests' included)."""
    return [msgspec.json.decode(d.body, type=AnyMessage).id for d in await bus.dead_letters(queue)]


class HandledBy:
    """Every delivery of a command, and the sender replica (its ``Sender``) that handled it."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[handlers.Sender, str]] = []

    def of(self, app: web.Application, commands: list[SendCommand]) -> list[str]:
        """The ids of ``commands`` delivered to this replica, once per delivery."""
        ids = {c.id for c in commands}
        return [cid for sender, cid in self.deliveries if sender is app[SENDER] and cid in ids]

    def count(self, command: SendCommand) -> int:
        return sum(1 for _, cid in self.deliveries if cid == command.id)


@pytest.fixture
def handled_by(monkeypatch: pytest.MonkeyPatch) -> HandledBy:
    """Wraps the command handler of the replicas started after it (each app binds the
    handler when its consumers start)."""
    tracker = HandledBy()
    original = handlers.commands

    def counting(sender: handlers.Sender) -> Handler:
        handle = original(sender)

        async def counted(msg: AnyMessage, delivery: Delivery) -> None:
            tracker.deliveries.append((sender, msg.id))
            await handle(msg, delivery)

        return counted

    monkeypatch.setattr(handlers, "commands", counting)
    return tracker


def retries(reason: str) -> float:
    return sample("wxkf_sender_retries_total", reason=reason)


def ambiguous(msgtype: str, policy: str) -> float:
    return sample("wxkf_sender_ambiguous_total", msgtype=msgtype, policy=policy)
