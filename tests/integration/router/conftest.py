"""The router service on ``memory://`` and on RabbitMQ + Redis, driven as ingress drives it.

Each test gets a bus of its own (a fresh memory broker; on RabbitMQ, the module's own vhost,
deleted after, with collector queues of its own), a store of its own (a memory URL, or a
unique Redis key prefix, removed after) and a rules file of its own, so runs repeat and
overlap on the shared broker and Redis. The router runs as its own app with its own bus
connection, like another process;
the rig asks for decisions like ingress (``Bus.request``) and collects what the router
publishes: send commands, decision facts and extension events, on queues of its own.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from libs.common import bus as bus_lib
from libs.common.bus import Bus, Delivery
from libs.common.bus.memory import MemoryBus
from libs.common.schemas import (
    AnyMessage,
    DecisionMade,
    DecisionReply,
    InboundEvent,
    SendCommand,
    SessionEntered,
    TextReceived,
    decode_reply,
)
from libs.common.settings import load
from libs.common.store import Store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from libs.common.topology import COMMANDS, EVENTS, QueueSpec
from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.support import rabbit
from tests.support.redis_keys import REDIS_URL, delete_prefixed, unique_prefix
from tests.support.waiting import eventually

APPID = "wx0123456789abcdef"
GH_ID = "gh_0123456789ab"

RULES = """\
timezone: Asia/Shanghai
rules:
  - name: welcome
    match: {event: user_enter_tempsession}
    reply: 欢迎
  - name: waiting-for-agent
    match: {type: [text, image], session: {transferred_within: 30m}}
    transfer: true
  - name: agent
    match: {text: {contains: [人工, human]}}
    reply: 正在转接
    transfer: true
  - name: faq
    match: {text: {contains: 尺码}}
    reply: [尺码表如下, {image: size-chart}]
  - name: bot
    match: {text: {starts_with: "bot"}}
    typing: true
    extension: bot
  - name: nobody
    match: {text: {starts_with: "ghost"}}
    extension: ghost
  - name: echo
    match: {type: text}
    reply: "{VERSION}: {text}"
fallback:
  ignore: true
"""


def rules_text(version: str = "v1") -> str:
    return RULES.replace("{VERSION}", version)


@dataclass
class Rig:
    backend: str
    bus: Bus
    """The rig's own connection: it plays ingress, and collects what the router publishes."""
    store: Store
    rules_path: Path
    make_bus: Callable[[], Awaitable[Bus]]
    commands: list[SendCommand] = field(default_factory=list)
    facts: list[DecisionMade] = field(default_factory=list)
    extension_events: list[InboundEvent] = field(default_factory=list)
    servers: list[TestServer] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start_router(self, **overrides: Any) -> web.Application:
        settings = load(
            RouterSettings,
            {},
            appid=APPID,
            rules=str(self.rules_path),
            **{"router_rules_poll_s": 0.05, **overrides},
        )
        app = create_app(settings, bus=await self.make_bus(), store=self.store)
        server = TestServer(app)
        await server.start_server()
        self.servers.append(server)
        return app

    # -- what ingress publishes -------------------------------------------------------------------

    def openid(self) -> str:
        return f"oTest{uuid.uuid4().hex[:20]}"

    def text(self, openid: str, content: str, **kw: Any) -> TextReceived:
        return TextReceived(
            appid=APPID,
            openid=openid,
            correlation_id=uuid.uuid4().hex,
            to_user=GH_ID,
            create_time=int(kw.pop("at", 1_764_037_800)),
            msg_id=2**60 + next(self._seq),
            content=content,
            **kw,
        )

    def enter(self, openid: str) -> SessionEntered:
        return SessionEntered(
            appid=APPID,
            openid=openid,
            correlation_id=uuid.uuid4().hex,
            to_user=GH_ID,
            create_time=1_764_037_800,
        )

    async def ask(self, event: InboundEvent, *, budget_s: float = 10.0) -> DecisionReply | None:
        """What ingress does: publish with a reply address and wait for the decision."""
        body = await self.bus.request(event, timeout=budget_s)
        return None if body is None else decode_reply(body)

    # -- what the router published ----------------------------------------------------------------

    def commands_for(self, event: InboundEvent) -> list[SendCommand]:
        return sorted((c for c in self.commands if c.cause_id == event.id), key=lambda c: c.seq)

    async def decided(self, event: InboundEvent) -> DecisionMade:
        facts = await eventually(
            lambda: [f for f in self.facts if f.event_id == event.id],
            what=f"the decision fact of {event.id}",
        )
        return facts[0]

    async def commanded(self, event: InboundEvent, count: int) -> list[SendCommand]:
        return await eventually(
            lambda: self.commands_for(event),
            lambda got: len(got) >= count,
            what=f"{count} commands for {event.id}",
        )


@pytest.fixture
async def rig(vhost: str | None, tmp_path: Path) -> AsyncIterator[Rig]:
    prefix = unique_prefix()
    buses: list[Bus] = []
    store: Store
    memory_url = f"memory://router-test-{uuid.uuid4().hex}"
    if vhost is None:
        memory = MemoryBus.fresh()
        store = MemoryStore.shared(memory_url, prefix=prefix)

        async def make_bus() -> Bus:
            client = memory.client()
            buses.append(client)
            return client

    else:
        # One vhost per module (tests/integration/conftest.py): creating one is slow on a
        # shared broker, and events, queues and keys here are unique to each test anyway.
        amqp_url = rabbit.url(vhost)
        store = await RedisStore.connect(REDIS_URL, prefix=prefix)

        async def make_bus() -> Bus:
            client = await bus_lib.connect(amqp_url)
            buses.append(client)
            return client

    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(rules_text(), encoding="utf-8")
    bus = await make_bus()
    backend = "memory" if vhost is None else "real"
    rig = Rig(backend=backend, bus=bus, store=store, rules_path=rules_path, make_bus=make_bus)
    suffix = uuid.uuid4().hex[:8]
    sent = QueueSpec(name=f"test.router.commands.{suffix}", exchange=COMMANDS, bindings=("send.#",))
    facts = QueueSpec(
        name=f"test.router.facts.{suffix}", exchange=EVENTS, bindings=("decision.#", "ext.bot")
    )
    await bus.declare()
    await bus.declare([sent, facts])

    async def collect_command(msg: AnyMessage, delivery: Delivery) -> None:
        assert isinstance(msg, SendCommand)
        rig.commands.append(msg)

    async def collect_fact(msg: AnyMessage, delivery: Delivery) -> None:
        if isinstance(msg, DecisionMade):
            rig.facts.append(msg)
        else:
            rig.extension_events.append(msg)  # type: ignore[arg-type]

    await bus.consume(sent, collect_command)
    await bus.consume(facts, collect_fact)
    try:
        yield rig
    finally:
        for server in reversed(rig.servers):
            await server.close()
        for client in reversed(buses):
            await client.close()
        await store.close()
        if vhost is None:
            MemoryStore.forget(memory_url)
        else:
            await delete_prefixed(prefix)
