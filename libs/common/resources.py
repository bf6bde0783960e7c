"""Cleanup contexts for the resources every service holds: the bus, the store, an HTTP client,
and WeChat's API with its access token (sender, media).

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
from libs.common.keys import ACCESS_TOKEN, BUS, HTTP, STORE, WECHAT_API
from libs.common.settings import WeChatApiSettings
from libs.common.store import Store
from libs.common.topology import CORE_QUEUES, QueueSpec
from libs.common.wechat.api import TYPING_PATHS, ApiClient
from libs.common.wechat.token import AccessToken

log = structlog.get_logger(__name__)

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]
Clock = Callable[[], float]


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
    session = _session_factory(timeout_s, limit, limit_per_host, connect_timeout_s, read_bufsize)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with session() as opened:
            app[HTTP] = opened
            yield

    return ctx


def _session_factory(
    timeout_s: float,
    limit: int,
    limit_per_host: int,
    connect_timeout_s: float,
    read_bufsize: int | None,
) -> Callable[[], aiohttp.ClientSession]:
    """Checked now; the session itself is made on the running loop, at start."""
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    if limit < 0 or limit_per_host < 0:
        raise ValueError(f"connection limits must be >= 0, got {limit!r}, {limit_per_host!r}")

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host)
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(connect_timeout_s, timeout_s))
        if read_bufsize is None:
            return aiohttp.ClientSession(connector=connector, timeout=timeout)
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, read_bufsize=read_bufsize
        )

    return session


def wechat_ctx(
    settings: WeChatApiSettings,
    *,
    service: str,
    clock: Clock,
    connections: int,
    read_bufsize: int | None = None,
    typing_path: str = TYPING_PATHS[0],
) -> CleanupCtx:
    """``app[HTTP]``, ``app[WECHAT_API]`` and ``app[ACCESS_TOKEN]``: the app's client session
    (each call bounded by ``WXKF_WECHAT_TIMEOUT_S``, at most ``connections`` open), WeChat's API
    on it, and the access token shared through ``app[STORE]`` (so :func:`store_ctx` comes
    first). ``clock`` is WeChat's time (tests pass the simulator's)."""
    session = _session_factory(settings.wechat_timeout_s, connections, 0, 5.0, read_bufsize)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with session() as opened:
            app[HTTP] = opened
            api = ApiClient(
                opened,
                base_url=settings.wechat_api_base,
                timeout_s=settings.wechat_timeout_s,
                typing_path=typing_path,
                service=service,
            )
            app[WECHAT_API] = api
            app[ACCESS_TOKEN] = AccessToken(
                api,
                app[STORE],
                appid=settings.appid,
                secret=settings.app_secret,
                clock=clock,
                service=service,
                # The lock outlives the refresh it guards: two bounded calls and a margin.
                lock_ttl_s=2 * settings.wechat_timeout_s + 5.0,
            )
            yield

    return ctx
