"""The guarded public port: idle and slow connections closed, a cap per source, handlers spared."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from libs.common import edge
from libs.common.runner import running
from libs.common.web import base_app

SHORT_S = 0.3
REQUEST = b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"


@contextlib.asynccontextmanager
async def guarded(per_source: int = 0) -> AsyncIterator[tuple[int, asyncio.Event]]:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    app = base_app(service="edge-test")
    app.router.add_get("/slow", slow)
    edge.install(
        app,
        edge.EdgeLimits(read_timeout_s=SHORT_S, idle_timeout_s=SHORT_S, per_source=per_source),
    )
    async with running([(app, 0)], shutdown_grace_s=0) as ports:
        yield ports[0], release
        release.set()


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
    async with guarded() as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader, within_s=10)
        writer.close()


async def test_headers_trickled_past_the_read_timeout_are_cut_off() -> None:
    async with guarded() as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def trickle() -> None:
            for byte in REQUEST[:-4]:  # never the blank line that ends the headers
                writer.write(bytes([byte]))
                await asyncio.sleep(SHORT_S / 4)

        task = asyncio.create_task(trickle())
        assert await closed_by_server(reader, within_s=10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task
        writer.close()


async def test_a_request_being_handled_is_not_cut_off() -> None:
    async with guarded() as (port, release):
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
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(extra_reader, within_s=10)
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
