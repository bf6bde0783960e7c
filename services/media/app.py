"""The media service's composition root: ``create_app(settings, *, bus=None, store=None)``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import structlog
from aiohttp import web

from libs.common.bus import Bus
from libs.common.keys import ACCESS_TOKEN, BUS, STORE, WECHAT_API
from libs.common.resources import bus_ctx, store_ctx, wechat_ctx
from libs.common.store import Store
from libs.common.topology import CORE_QUEUES, MEDIA_ARCHIVE
from libs.common.web import base_app
from services.media import archive
from services.media.assets import AssetDir
from services.media.cache import DiskCache
from services.media.handlers import assets, edge, media
from services.media.keys import ASSETS, CACHE, CLOCK, SETTINGS, UPLOADER, WECHAT
from services.media.records import LIFETIME_S
from services.media.settings import MediaSettings
from services.media.uploads import Uploader
from services.media.upstream import WeChatMedia

log = structlog.get_logger(__name__)

SERVICE = "media"
HTTP_CONNECTIONS = 100
READ_BUFSIZE = 256 * 1024
"""aiohttp stops reading a response once twice this is buffered. aiohttp's own default in 3.14;
3.13 and earlier buffer 64 KB, which pauses and resumes a stream after every read of uvloop's."""


def create_app(
    settings: MediaSettings,
    *,
    bus: Bus | None = None,
    store: Store | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The media service. ``clock`` is WeChat's time (tests pass the simulator's)."""
    app = base_app(service=SERVICE)
    if not settings.internal_token:
        log.warning("media.open", hint="WXKF_MEDIA_OPEN: the API needs no token")
    app.middlewares.extend([edge.errors, edge.internal_token])
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app.cleanup_ctx.append(store_ctx(settings.store_url, store=store))
    # The session's timeout bounds API calls; a download streams longer, and the WeChat client
    # bounds each of its reads instead.
    app.cleanup_ctx.append(
        wechat_ctx(
            settings,
            service=SERVICE,
            clock=clock,
            connections=HTTP_CONNECTIONS,
            read_bufsize=READ_BUFSIZE,
        )
    )
    app.cleanup_ctx.append(_upstream_ctx)
    if settings.media_cache_dir:
        app.cleanup_ctx.append(_cache_ctx)
    if settings.assets_dir:
        app.cleanup_ctx.append(_assets_ctx)
    if settings.archive_enabled:
        # Only an archiving media service needs the broker, and it alone drains this queue.
        app.cleanup_ctx.append(
            bus_ctx(
                settings.bus_url,
                bus=bus,
                queues=(
                    (*CORE_QUEUES, MEDIA_ARCHIVE)
                    if settings.bus_declare == "all"
                    else (MEDIA_ARCHIVE,)
                ),
                name=f"wxkf-{SERVICE}",
            )
        )
        app.cleanup_ctx.append(_archive_ctx)
    add_routes(app)
    return app


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/media", media.upload)
    # No HEAD: it would fetch the whole media from WeChat to answer with headers only.
    app.router.add_get("/v1/media/{media_id}", media.download, allow_head=False)
    app.router.add_put("/v1/assets/{name}", assets.put)
    app.router.add_get("/v1/assets/{name}", assets.get)
    app.router.add_delete("/v1/assets/{name}", assets.delete)
    app.router.add_get("/v1/assets/{name}/media_id", assets.media_id)


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    wechat = WeChatMedia(
        app[WECHAT_API], app[ACCESS_TOKEN], deadline_s=settings.media_upstream_deadline_s
    )
    app[WECHAT] = wechat
    app[UPLOADER] = Uploader(
        store=app[STORE],
        wechat=wechat,
        clock=app[CLOCK],
        margin_s=settings.media_reuse_margin_h * 3600.0,
    )
    yield


async def _cache_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.media_cache_dir is not None
    cache = DiskCache(
        Path(settings.media_cache_dir),
        max_bytes=settings.media_cache_max_bytes,
        max_age_s=LIFETIME_S,
        clock=app[CLOCK],
    )
    await asyncio.to_thread(cache.load)
    app[CACHE] = cache
    yield


async def _assets_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.assets_dir is not None
    assets_dir = AssetDir(
        Path(settings.assets_dir),
        max_bytes=settings.media_max_bytes,
        allowed=settings.allowed_kinds,
    )
    await asyncio.to_thread(assets_dir.prepare)
    app[ASSETS] = assets_dir
    yield


async def _archive_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.archive_dir is not None
    archiver = archive.Archiver(
        directory=Path(settings.archive_dir),
        wechat=app[WECHAT],
        bus=app[BUS],
        max_bytes=settings.archive_max_bytes,
        appid=settings.appid,
    )
    await app[BUS].consume(MEDIA_ARCHIVE, archive.handler(archiver))
    log.info("media.archive_consuming", queue=MEDIA_ARCHIVE.name)
    try:
        yield
    finally:
        await app[BUS].stop_consuming(grace_s=app[SETTINGS].shutdown_grace_s)
