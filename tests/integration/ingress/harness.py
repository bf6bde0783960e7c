"""What the ingress suites share: the backends, a tap on kf.events, a stand-in router, apps.

One suite runs on both backends: ``memory`` (the embedded twins) and ``real`` (RabbitMQ in a
vhost of the test module's own, Redis under a key prefix of the test's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp

from libs.common.bus import Bus, Delivery
from libs.common.bus import connect as connect_bus
from libs.common.bus.memory import MemoryBus
from libs.common.inbound import event_id
from libs.common.runner import running
from libs.common.schemas import AnyMessage, DecisionReply, InboundEvent, UserMessage
from libs.common.settings import Secret
from libs.common.store import Store
from libs.common.store import connect as connect_store
from libs.common.store.memory import MemoryStore
from libs.common.topology import EVENTS, ROUTER_EVENTS, QueueSpec
from libs.common.wechat import codec
from libs.common.wechat.codec import Format
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.push import build_push
from services.ingress.app import create_app
from services.ingress.settings import IngressSettings
from services.simulator.pusher import Pusher, new_msg_id
from tests.support import metrics, rabbit
from tests.support.redis_keys import REDIS_URL, delete_prefixed
from tests.support.waiting import eventually

TOKEN = "ingress-test-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx2c2769f8efd9abc2"
GH_ID = "gh_10f6c3c3ac5a"
PATH = "/wechat"


@dataclass
class Backend:
    """The broker and store one test runs on, and how to look inside them."""

    name: str
    bus_url: str
    store_url: str
    prefix: str
    vhost: str | None = None
    clients: list[Bus] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    _probe: aio_pika.abc.AbstractConnection | None = None

    async def bus(self, url: str | None = None, **options: Any) -> Bus:
        """A client of the test's broker (closed by the fixture)."""
        bus = await connect_bus(url or self.bus_url, **options)
        self.clients.append(bus)
        return bus

    async def store(self, url: str | None = None) -> Store:
        """A store under the test's prefix (closed by the fixture)."""
        store = await connect_store(url or self.store_url, prefix=self.prefix)
        self.stores.append(store)
        return store

    async def depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (a tap nobody consumes: all it was given)."""
        if self.vhost is None:
            return len(MemoryBus.shared(self.bus_url).broker.queues[queue].ready)
        if self._probe is None:
            self._probe = await aio_pika.connect(self.bus_url)
        channel = await self._probe.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            count = declared.declaration_result.message_count
            return int(count or 0)
        finally:
            await channel.close()

    async def close(self) -> None:
        if self._probe is not None:
            await self._probe.close()
        for bus in self.clients:
            await bus.close()
        for store in self.stores:
            await store.close()
        if self.vhost is None:
            MemoryStore.forget(self.store_url)
        else:
            await delete_prefixed(self.prefix)


def memory_backend() -> Backend:
    name = uuid.uuid4().hex[:10]
    return Backend(
        name="memory",
        bus_url=f"memory://ingress-{name}",
        store_url=f"memory://ingress-{name}",
        prefix="wxkf:",
    )


def real_backend(vhost: str) -> Backend:
    return Backend(
        name="real",
        bus_url=rabbit.url(vhost),
        store_url=REDIS_URL,
        prefix=f"wxkf-test-{uuid.uuid4().hex[:10]}:",
        vhost=vhost,
    )


def settings(backend: Backend, **overrides: Any) -> IngressSettings:
    values: dict[str, Any] = {
        "appid": APPID,
        "token": Secret(TOKEN),
        "aes_key": Secret(AES_KEY),
        "bus_url": Secret(backend.bus_url),
        "store_url": Secret(backend.store_url),
        "decision_budget_ms": 2000,
    }
    values.update(overrides)
    return IngressSettings(**values)


@contextlib.asynccontextmanager
async def ingress(
    backend: Backend,
    conf: IngressSettings | None = None,
    *,
    bus: Bus | None = None,
    store: Store | None = None,
) -> AsyncIterator[str]:
    """An ingress app on a free port; yields its push URL. Its store uses the test prefix.

    Its internal port (health, readiness, metrics) is :func:`internal_of` the push URL.
    """
    conf = conf or settings(backend)
    store = store or await backend.store()
    app = create_app(conf, bus=bus, store=store)
    async with running(
        [(app, 0)], host="127.0.0.1", shutdown_grace_s=1.0, internal_port=0
    ) as ports:
        url = f"http://127.0.0.1:{ports[0]}{conf.push_path}"
        _INTERNAL[url] = f"http://127.0.0.1:{ports[1]}"
        try:
            yield url
        finally:
            del _INTERNAL[url]


_INTERNAL: dict[str, str] = {}


def internal_of(push_url: str) -> str:
    """The internal port's base URL of the ingress serving ``push_url``."""
    return _INTERNAL[push_url]


def pusher(url: str, conf: IngressSettings, **options: Any) -> Pusher:
    """WeChat, configured as the ingress under test is (``options`` override)."""
    values: dict[str, Any] = {
        "token": conf.token,
        "appid": conf.appid,
        "aes_key": conf.aes_key,
        "mode": conf.mode,
        "fmt": "xml" if conf.push_format == "auto" else conf.push_format,
        "gh_id": GH_ID,
    }
    values.update(options)
    return Pusher(url, **values)


class Tap:
    """A queue of the test's own bound to every inbound event: what reached the bus."""

    def __init__(self, backend: Backend, bus: Bus) -> None:
        self.backend = backend
        self.bus = bus
        self.spec = QueueSpec(
            name=f"test.ingress.tap.{uuid.uuid4().hex[:10]}",
            exchange=EVENTS,
            bindings=("msg.#", "event.#"),
            max_attempts=1,
        )

    async def start(self) -> Tap:
        await self.bus.declare([self.spec])
        return self

    async def depth(self) -> int:
        return await self.backend.depth(self.spec.name)

    async def events(self, *, at_least: int = 0) -> list[InboundEvent]:
        """Everything published so far (call once all answers are in), read off the queue."""
        expected: int = await eventually(
            self.depth, lambda n: n >= at_least, what=f"{at_least} events on the tap"
        )
        seen: list[InboundEvent] = []

        async def collect(msg: AnyMessage, delivery: Delivery) -> None:
            assert isinstance(msg, InboundEvent)
            seen.append(msg)

        reader = await self.backend.bus()
        await reader.consume(self.spec, collect)
        await eventually(lambda: len(seen), lambda n: n >= expected, what="tap drained")
        await reader.stop_consuming()
        return seen


def counts(events: list[InboundEvent]) -> Counter[str]:
    return Counter(e.id for e in events)


class Responder:
    """Stands in for the router: answers each user message's decision, first thing."""

    def __init__(
        self,
        bus: Bus,
        decide: Callable[[UserMessage], bool] = lambda msg: False,
    ) -> None:
        self.bus = bus
        self.decide = decide
        self.seen: list[InboundEvent] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def start(self) -> Responder:
        await self.bus.consume(ROUTER_EVENTS, self.handle)
        return self

    async def handle(self, msg: AnyMessage, delivery: Delivery) -> None:
        if not isinstance(msg, InboundEvent):
            return
        self.seen.append(msg)
        if isinstance(msg, UserMessage) and delivery.reply_to:
            await self.hold.wait()
            decision = DecisionReply(event_id=msg.id, transfer=self.decide(msg), rule="test")
            await delivery.reply(decision)


def sample(name: str) -> float:
    metric, _, labels = name.partition("{")
    wanted: dict[str, str] = {}
    if labels:
        for pair in labels.rstrip("}").split(","):
            key, _, value = pair.partition("=")
            wanted[key] = value.strip('"')
    return metrics.sample(metric, **wanted)


class Push:
    """One push, built once, that can be sent again byte for byte (as WeChat's retries are)."""

    def __init__(self, conf: IngressSettings, msg: codec.Message, *, fmt: Format = "xml") -> None:
        self.msg = msg
        self.fmt = fmt
        cipher = Cipher.from_key(conf.aes_key, conf.appid) if conf.aes_key else None
        self.query, self.body = build_push(
            msg,
            token=conf.token,
            cipher=cipher,
            mode=conf.mode,
            fmt=fmt,
            timestamp=msg.create_time,
            nonce=str(uuid.uuid4().int % 10**9),
        )
        self.event_id = event_id(msg, appid=conf.appid)

    async def send(
        self, session: aiohttp.ClientSession, url: str, *, timeout_s: float = 5.0
    ) -> tuple[int | None, bytes]:
        """(status, body), or (None, b"") when no answer came in time or the link failed."""
        content_type = "text/xml" if self.fmt == "xml" else "application/json"
        try:
            async with session.post(
                url,
                params=self.query,
                data=self.body,
                headers={"Content-Type": content_type},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                return resp.status, await resp.read()
        except (TimeoutError, aiohttp.ClientError):
            return None, b""


def text_message(content: str = "hello", *, openid: str = "o-test-user") -> codec.TextMessage:
    return codec.TextMessage(
        to_user=GH_ID,
        from_user=openid,
        create_time=int(time.time()),
        content=content,
        msg_id=new_msg_id(),
    )
