"""The ingress service's composition root."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from libs.common import edge
from libs.common.bus import Bus
from libs.common.keys import BUS, STORE
from libs.common.resources import bus_ctx, store_ctx
from libs.common.store import Store
from libs.common.topology import CORE_QUEUES
from libs.common.web import READY_WITH_ONE_OF, base_app
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.push import PushConfig
from services.ingress import push, verify
from services.ingress.dedupe import Recorder
from services.ingress.gate import Gate
from services.ingress.keys import GATE, PUSH, RECORDER, RELAY, SETTINGS
from services.ingress.settings import IngressSettings
from services.ingress.spool import Relay


def push_config(settings: IngressSettings) -> PushConfig:
    """What the protocol core needs to open this URL's pushes."""
    cipher = Cipher.from_key(settings.aes_key, settings.appid) if settings.aes_key else None
    return PushConfig(
        token=settings.token,
        appid=settings.appid,
        cipher=cipher,
        mode=settings.mode,
        fmt=settings.push_format,
        max_body_bytes=settings.max_body_bytes,
        max_age_s=settings.max_push_age_s,
    )


async def _recorded_before_the_store_closes(app: web.Application) -> AsyncIterator[None]:
    # Cleanup runs last registered first: the answers on their way land before the store closes.
    yield
    await app[RECORDER].drain()


async def _relay(app: web.Application) -> AsyncIterator[None]:
    """The spool's relay runs while the app does (after the bus and the store open)."""
    relay = Relay(app[BUS], app[STORE])
    app[RELAY] = relay
    task = None
    if app[SETTINGS].spool_limit:
        task = asyncio.get_running_loop().create_task(relay.run())
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def create_app(
    settings: IngressSettings, *, bus: Bus | None = None, store: Store | None = None
) -> web.Application:
    app = base_app(service="ingress")
    # A push is kept while either answers: the spool holds it for the broker, and without
    # the store it is published undeduplicated (see dedupe.py).
    if settings.spool_limit:
        app[READY_WITH_ONE_OF] = frozenset({"bus", "store"})
    app[SETTINGS] = settings
    edge.install(
        app,
        edge.EdgeLimits(
            read_timeout_s=settings.read_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
            per_source=settings.max_connections_per_source,
        ),
    )
    app[PUSH] = push_config(settings)
    app[GATE] = Gate(settings.max_in_flight)
    app[RECORDER] = Recorder()
    app.cleanup_ctx.extend(
        [
            bus_ctx(
                settings.bus_url,
                bus=bus,
                # Ingress consumes no queue: with its own declarations, nothing (its user may
                # configure nothing; until a consumer declares kf.events, pushes are spooled).
                queues=CORE_QUEUES,
                declare=settings.bus_declare == "all",
                name="wxkf-ingress",
            ),
            store_ctx(settings.store_url, store=store),
            _recorded_before_the_store_closes,
            _relay,
        ]
    )
    app.router.add_get(settings.push_path, verify.handle)
    app.router.add_post(settings.push_path, push.handle)
    return app
