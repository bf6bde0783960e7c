"""Cleanup contexts for the resources every service holds: the bus, the store, an HTTP client.

Each returns a function for ``app.cleanup_ctx``: it opens (or adopts) the resource at start,
puts it under its typed key, and at stop closes only what it opened itself. A resource passed
in (the shared ``memory://`` twins of ``wxkf run all``, a test's instance) belongs to the
caller, who closes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable

import aiohttp
import structlog
from aiohttp import web

from libs.common import bus as bus_lib
from libs.common import store as store_lib
from libs.common.bus import Bus
from libs.common.keys import BUS, HTTP, STORE
from libs.common.store import Store
from libs.common.topology import CORE_QUEUES, QueueSpec

log = structlog.get_logger(__name__)

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def bus_ctx(
    url: str,
    *,
    bus: Bus | None = None,
    queues: Iterable[QueueSpec] = CORE_QUEUES,
    name: str = "wxkf",
    declare: bool = True,
) -> CleanupCtx:
    """``app[BUS]``: ``bus`` if given, else a connection to ``url``; the topology declared
    (the exchanges and ``queues``), unless ``declare`` is false."""
    specs = tuple(queues)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        opened = bus is None
        instance = await bus_lib.connect(url, name=name) if bus is None else bus
        try:
            # Idempotent, and done by every service, so no event is unroutable because its
            # consumer has not started yet.
            if declare:
                await instance.declare(specs)
            app[BUS] = instance
            yield
        finally:
            if opened:
                await instance.close()
                # The stop's one line at info is runner.stopped; the steps are for debugging.
                log.debug("bus.closed")

    return ctx


def store_ctx(url: str, *, store: Store | None = None, prefix: str = "wxkf:") -> CleanupCtx:
    """``app[STORE]``: ``store`` if given, else the store at ``url`` under ``prefix``."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        opened = store is None
        instance = await store_lib.connect(url, prefix=prefix) if store is None else store
        try:
            app[STORE] = instance
            yield
        finally:
            if opened:
                await instance.close()
                log.debug("store.closed")

    return ctx


def http_ctx(
    *,
    timeout_s: float,
    limit: int = 100,
    limit_per_host: int = 0,
    connect_timeout_s: float = 5.0,
    read_bufsize: int | None = None,
) -> CleanupCtx:
    """``app[HTTP]``: one client session for the app's outgoing calls.

    ``timeout_s`` bounds each whole call; ``limit`` caps open connections (0: no cap);
    ``read_bufsize`` is how much of a response body aiohttp buffers before it stops reading
    the connection (twice that, in fact); None leaves aiohttp's default (256 KB in 3.14,
    64 KB in 3.13 and before).
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    if limit < 0 or limit_per_host < 0:
        raise ValueError(f"connection limits must be >= 0, got {limit!r}, {limit_per_host!r}")

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host)
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(connect_timeout_s, timeout_s))
        session = (
            aiohttp.ClientSession(connector=connector, timeout=timeout)
            if read_bufsize is None
            else aiohttp.ClientSession(
                connector=connector, timeout=timeout, read_bufsize=read_bufsize
            )
        )
        async with session:
            app[HTTP] = session
            yield

    return ctx
