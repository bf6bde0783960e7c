"""The history service's composition root: ``create_app(settings, *, bus=None)``."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from examples.extension import api, consumer
from examples.extension.db import HistoryDb
from examples.extension.keys import DB, SETTINGS
from examples.extension.queues import history_queues
from examples.extension.settings import HistorySettings
from libs.common.bus import Bus
from libs.common.keys import BUS
from libs.common.resources import bus_ctx
from libs.common.topology import QueueSpec
from libs.common.web import add_readiness_check, base_app

log = structlog.get_logger(__name__)

SERVICE = "history"


def create_app(settings: HistorySettings, *, bus: Bus | None = None) -> web.Application:
    """The history service. A ``bus`` passed in (a test's, an embedding process's) stays the
    caller's to close; give the service a client of its own, since stopping it stops every
    consumer of that client."""
    app = base_app(service=SERVICE)
    app.middlewares.append(api.errors)
    app[SETTINGS] = settings
    queues = history_queues(settings.history_queue, max_length=settings.history_queue_max)
    # Cleanup runs in reverse: the consumers stop (in-flight writes finish) before the
    # database closes, and the database before the bus.
    app.cleanup_ctx.extend(
        [
            # Only its own queues: the core topology is the core services' to declare.
            bus_ctx(settings.bus_url, bus=bus, queues=queues),
            _database,
            functools.partial(_consumers, queues=queues),
        ]
    )
    app.router.add_get("/conversations/{openid}", api.conversation)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = await HistoryDb.open(settings.history_db, busy_timeout_s=settings.history_busy_timeout_s)
    app[DB] = db
    add_readiness_check(app, "database", db.ping)
    try:
        yield
    finally:
        await db.close()


async def _consumers(app: web.Application, *, queues: tuple[QueueSpec, ...]) -> AsyncIterator[None]:
    bus, settings = app[BUS], app[SETTINGS]
    keep = consumer.handler(app[DB])
    try:
        for spec in queues:
            await bus.consume(spec, keep, prefetch=settings.history_prefetch)
            log.info("history.consuming", queue=spec.name)
        yield
    finally:
        await bus.stop_consuming()
        log.info("history.stopped_consuming")
