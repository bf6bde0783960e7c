"""The guarded public port: idle and slow connections closed, a cap per source, handlers spared."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from libs.common import edge
from libs.common.runner import running
from libs.common.web import base_app

SHORT_S = 0.3
LONG_S = 30.0
"""Longer than any test here waits: a bound set to it never closes anything."""
REQUEST = b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
SERVICE = "edge-test"


def closed(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "wxkf_http_connections_closed_total", {"service": SERVICE, "reason": reason}
    )
    return value or 0.0


@contextlib.asynccontextmanager
async def guarded(
    *, read_s: float = LONG_S, idle_s: float = LONG_S, per_source: int = 0
) -> AsyncIterator[tuple[int, asyncio.Event]]:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    async def since(request: web.Request) -> web.Response:
        waited = asyncio.get_running_loop().time() - edge.reading_since(request)
        return web.Response(text=f"{waited:.3f}")

    app = base_app(service=SERVICE)
    app.router.add_get("/slow", slow)
    app.router.add_get("/since", since)
    edge.install(
        app, edge.EdgeLimits(read_timeout_s=read_s, idle_timeout_s=idle_s, per_source=per_source)
    )
    async with running([(app, 0)], shutdown_grace_s=0) as ports:
        try:
            yield ports[0], release
        finally:
            release.set()  # a failed test must not leave handlers waiting


async def closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    """True when the server closes the connection (EOF or reset) within ``within_s``."""
    try:
        async with asyncio.timeout(within_s):
            while await reader.read(1024):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def test_an_idle_connection_is_closed() -> None:
    async with guarded(idle_s=SHORT_S) as (port, _):
        before = closed("idle")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader, within_s=10)
        assert closed("idle") == before + 1
        writer.close()


async def test_headers_trickled_past_the_read_timeout_are_cut_off() -> None:
    # The client never stops sending, a byte at a time and never the blank line that ends
    # the headers: a deadline that each byte pushed back would never close it.
    async with guarded(read_s=SHORT_S) as (port, _):
        before = closed("read_timeout")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def trickle() -> None:
            writer.write(REQUEST[:-4])
            while True:
                writer.write(b"x")
                await asyncio.sleep(SHORT_S / 6)

        task = asyncio.create_task(trickle())
        assert await closed_by_server(reader, within_s=SHORT_S * 10)
        assert closed("read_timeout") == before + 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task
        writer.close()


async def test_a_request_being_handled_is_not_cut_off() -> None:
    async with guarded(read_s=SHORT_S, idle_s=SHORT_S) as (port, release):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        # The handler runs several times the timeouts; the connection stays.
        assert not await closed_by_server(reader, within_s=SHORT_S * 5)
        release.set()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        writer.close()


@pytest.mark.parametrize("cap", [2])
async def test_one_source_holds_at_most_its_cap(cap: int) -> None:
    async with guarded(per_source=cap) as (port, release):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(cap)]
        for _, writer in held:
            writer.write(REQUEST)  # busy: neither idle nor reading
        before = closed("per_source")
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
        # Neither idle nor read bound can close it within the wait: only the cap.
        assert await closed_by_server(extra_reader, within_s=10)
        assert closed("per_source") == before + 1
        # Another address is not affected.
        other_reader, other_writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.2", 0)
        )
        other_writer.write(REQUEST)
        release.set()
        head = await asyncio.wait_for(other_reader.readuntil(b"\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        for reader, _ in held:
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)).startswith(
                b"HTTP/1.1 200"
            )
        for _, writer in [*held, (extra_reader, extra_writer), (other_reader, other_writer)]:
            writer.close()


async def test_a_handler_knows_when_its_request_began_to_arrive() -> None:
    # Headers sent over 0.5 s: the handler's read deadline counts from their first byte,
    # so headers and body share one bound.
    async with guarded(read_s=5.0) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET /since HTTP/1.1\r\nHost: t\r\n\r\n"
        writer.write(request[:10])
        await asyncio.sleep(0.5)
        writer.write(request[10:])
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        body = await asyncio.wait_for(reader.read(64), 10)
        assert float(body) >= 0.5
        writer.close()
