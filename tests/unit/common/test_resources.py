"""Cleanup contexts: what they open they close, what they are given they leave alone."""

from __future__ import annotations

import uuid

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from libs.common.bus import BusError
from libs.common.bus.memory import MemoryBus
from libs.common.keys import ACCESS_TOKEN, BUS, HTTP, STORE, WECHAT_API
from libs.common.resources import bus_ctx, http_ctx, store_ctx, wechat_ctx
from libs.common.settings import Secret, WeChatApiSettings
from libs.common.store.memory import MemoryStore
from libs.common.topology import CORE_QUEUES, MEDIA_ARCHIVE
from libs.common.wechat.token import CachedToken, token_key


class RecordingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


async def started(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


async def test_bus_ctx_adopts_a_given_bus_declares_and_leaves_it_open() -> None:
    bus = MemoryBus.fresh()
    app = web.Application()
    app.cleanup_ctx.append(bus_ctx("memory://ignored", bus=bus, queues=(MEDIA_ARCHIVE,)))
    runner = await started(app)
    assert app[BUS] is bus
    assert MEDIA_ARCHIVE.name in bus.broker.queues
    assert CORE_QUEUES[0].name not in bus.broker.queues
    await runner.cleanup()
    await bus.ping()  # still open: it is the caller's


async def test_bus_ctx_opens_from_the_url_and_closes_what_it_opened() -> None:
    app = web.Application()
    app.cleanup_ctx.append(bus_ctx(f"memory://res-{uuid.uuid4().hex}"))
    runner = await started(app)
    bus = app[BUS]
    await bus.ping()
    assert isinstance(bus, MemoryBus)
    assert {q.name for q in CORE_QUEUES} <= set(bus.broker.queues)
    await runner.cleanup()
    with pytest.raises(BusError):
        await bus.ping()


async def test_bus_ctx_refuses_an_unknown_scheme_at_start() -> None:
    app = web.Application()
    app.cleanup_ctx.append(bus_ctx("kafka://broker"))
    runner = web.AppRunner(app)
    with pytest.raises(ValueError, match="kafka"):
        await runner.setup()
    await runner.cleanup()


async def test_store_ctx_adopts_a_given_store_and_leaves_it_open() -> None:
    store = RecordingStore()
    app = web.Application()
    app.cleanup_ctx.append(store_ctx("memory://ignored", store=store))
    runner = await started(app)
    assert app[STORE] is store
    await runner.cleanup()
    assert store.closed == 0


async def test_store_ctx_opens_from_the_url_under_the_prefix() -> None:
    url = f"memory://res-{uuid.uuid4().hex}"
    app = web.Application()
    app.cleanup_ctx.append(store_ctx(url, prefix="svc:"))
    runner = await started(app)
    try:
        await app[STORE].set("k", b"v")
        assert await MemoryStore.shared(url, prefix="").get("svc:k") == b"v"
    finally:
        await runner.cleanup()
        MemoryStore.forget(url)


async def test_cleanup_runs_in_reverse_order_of_registration() -> None:
    events: list[str] = []

    def recorder(name: str):
        async def ctx(app: web.Application):
            events.append(f"open {name}")
            yield
            events.append(f"close {name}")

        return ctx

    store = RecordingStore()
    app = web.Application()
    app.cleanup_ctx.extend(
        [recorder("bus"), store_ctx("memory://", store=store), recorder("consumers")]
    )
    runner = await started(app)
    await runner.cleanup()
    assert events == ["open bus", "open consumers", "close consumers", "close bus"]


async def test_http_ctx_gives_one_session_with_limits_and_closes_it() -> None:
    app = web.Application()
    app.cleanup_ctx.append(http_ctx(timeout_s=3.0, limit=7, limit_per_host=2))
    runner = await started(app)
    session = app[HTTP]
    assert isinstance(session, aiohttp.ClientSession)
    assert session.timeout.total == 3.0
    assert session.timeout.connect == 3.0
    connector = session.connector
    assert connector is not None
    assert (connector.limit, connector.limit_per_host) == (7, 2)
    await runner.cleanup()
    assert session.closed


async def test_http_ctx_buffers_a_body_up_to_its_read_bufsize() -> None:
    async def body(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 100)

    server = web.Application()
    server.router.add_get("/", body)
    async with TestServer(server) as upstream:
        for given, low in ((2**16, 2**16), (2**20, 2**20)):
            app = web.Application()
            app.cleanup_ctx.append(http_ctx(timeout_s=3.0, read_bufsize=given))
            runner = await started(app)
            async with app[HTTP].get(upstream.make_url("/")) as resp:
                # The body's reader shows its limits: aiohttp stops reading at ``high``.
                assert f"low={low} high={2 * low}" in repr(resp.content)
                assert await resp.read() == b"x" * 100
            await runner.cleanup()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"timeout_s": 0}, "timeout_s"), ({"timeout_s": 1, "limit": -1}, "limits")],
)
def test_http_ctx_refuses_bad_limits(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        http_ctx(**kwargs)


async def test_wechat_ctx_wires_the_client_and_the_shared_token_on_one_session() -> None:
    # The token of one call is the store's (another replica's) until it nears its end.
    async def never(request: web.Request) -> web.Response:
        raise AssertionError("the token is the store's: WeChat is not asked")

    async def typing(request: web.Request) -> web.Response:
        assert request.query["access_token"] == "shared-token"
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    wechat = web.Application()
    wechat.router.add_post("/cgi-bin/stable_token", never)
    wechat.router.add_post("/cgi-bin/message/custom/business/typing", typing)
    async with TestServer(wechat) as upstream:
        settings = WeChatApiSettings(
            appid="wx1",
            app_secret=Secret("s"),
            wechat_api_base=str(upstream.make_url("")),
            wechat_timeout_s=2.0,
        )
        store = RecordingStore()
        cached = CachedToken(access_token="shared-token", expires_at=1_767_225_600.0 + 7200)
        await store.set(token_key("wx1"), msgspec.json.encode(cached))
        app = web.Application()
        app.cleanup_ctx.append(store_ctx("memory://", store=store))
        app.cleanup_ctx.append(
            wechat_ctx(
                settings,
                service="test",
                clock=lambda: 1_767_225_600.0,
                connections=3,
                typing_path="/cgi-bin/message/custom/business/typing",
            )
        )
        runner = await started(app)
        session = app[HTTP]
        assert session.connector is not None
        assert session.connector.limit == 3
        assert session.timeout.total == 2.0
        token = app[ACCESS_TOKEN]
        await app[WECHAT_API].typing(await token.get(), "oUser", "Typing")
        await runner.cleanup()
        assert session.closed
        assert store.closed == 0  # given, so left open
