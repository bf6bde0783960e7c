"""The sender's composition root: WeChat's client and the shared token, and two consumers."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from libs.common.bus import Bus
from libs.common.keys import ACCESS_TOKEN, BUS, HTTP, STORE, WECHAT_API
from libs.common.media_client import MediaClient
from libs.common.resources import bus_ctx, store_ctx, wechat_ctx
from libs.common.store import Store
from libs.common.topology import CORE_QUEUES, SENDER_COMMANDS, SENDER_WINDOWS, QueueSpec
from libs.common.web import base_app
from services.sender import handlers
from services.sender.keys import CLOCK, SENDER, SETTINGS
from services.sender.settings import SenderSettings

SERVICE = "sender"


def create_app(
    settings: SenderSettings,
    *,
    bus: Bus | None = None,
    store: Store | None = None,
    clock: Callable[[], float] | None = None,
) -> web.Application:
    app = base_app(service=SERVICE)
    app[SETTINGS] = settings
    app[CLOCK] = clock = clock or time.time
    commands = settings.commands_queue()
    queues = CORE_QUEUES if commands == SENDER_COMMANDS else (*CORE_QUEUES, commands)
    if settings.bus_declare == "own":
        queues = (commands, SENDER_WINDOWS)
    app.cleanup_ctx.extend(
        [
            bus_ctx(settings.bus_url, bus=bus, queues=queues, name=f"wxkf-{SERVICE}"),
            store_ctx(settings.store_url, store=store),
            wechat_ctx(
                settings,
                service=SERVICE,
                clock=clock,
                connections=settings.http_connections,
                typing_path=settings.typing_path,
            ),
            functools.partial(_consumers, commands=commands),
        ]
    )
    return app


async def _consumers(app: web.Application, *, commands: QueueSpec) -> AsyncIterator[None]:
    settings, clock = app[SETTINGS], app[CLOCK]
    media = (
        MediaClient(
            app[HTTP],
            settings.media_url,
            token=str(settings.internal_token) if settings.internal_token else None,
            timeout_s=2 * settings.wechat_timeout_s,
        )
        if settings.media_url
        else None
    )
    sender = handlers.Sender(
        settings=settings,
        bus=app[BUS],
        store=app[STORE],
        api=app[WECHAT_API],
        token=app[ACCESS_TOKEN],
        media=media,
        commands=commands,
        clock=clock,
    )
    app[SENDER] = sender
    bus = app[BUS]
    await bus.consume(
        commands,
        handlers.commands(sender),
        prefetch=settings.sender_prefetch,
    )
    await bus.consume(
        SENDER_WINDOWS,
        handlers.window_events(sender),
        prefetch=settings.sender_prefetch,
    )
    try:
        yield
    finally:
        await bus.stop_consuming(grace_s=app[SETTINGS].shutdown_grace_s)
        # Outcomes on their way to the store land (or give up) before it closes.
        if sender.recording:
            await asyncio.wait(sender.recording, timeout=settings.shutdown_grace_s)
