"""The router's composition root: the rules (with hot reload) and the consumer of its queue."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from libs.common.bus import Bus
from libs.common.keys import BUS, STORE
from libs.common.resources import bus_ctx, store_ctx
from libs.common.store import Store
from libs.common.topology import CORE_QUEUES, ROUTER_EVENTS
from libs.common.web import base_app
from services.router import handlers
from services.router.keys import RULES, SETTINGS
from services.router.rules import Rules
from services.router.settings import RouterSettings

SERVICE = "router"


def create_app(
    settings: RouterSettings, *, bus: Bus | None = None, store: Store | None = None
) -> web.Application:
    app = base_app(service=SERVICE)
    app[SETTINGS] = settings
    app.cleanup_ctx.extend(
        [
            # Rules first: a rules file that does not compile stops the start before any
            # connection is made.
            _rules,
            bus_ctx(
                settings.bus_url,
                bus=bus,
                queues=CORE_QUEUES if settings.bus_declare == "all" else (ROUTER_EVENTS,),
                name=f"wxkf-{SERVICE}",
            ),
            store_ctx(settings.store_url, store=store),
            _consumer,
        ]
    )
    return app


async def _rules(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    rules = await Rules.open(settings.rules_path)
    app[RULES] = rules
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[bool]] = set()

    def on_sighup() -> None:
        task = loop.create_task(rules.reload(reason="sighup"))
        pending.add(task)
        task.add_done_callback(pending.discard)

    hup = False
    # Only the main thread of a Unix loop can take signals; elsewhere the file poll suffices.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        hup = True
    poll_s = settings.router_rules_poll_s
    watcher = loop.create_task(rules.watch(poll_s)) if poll_s > 0 else None
    try:
        yield
    finally:
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        for task in (watcher, *pending):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (watcher, *pending) if t), return_exceptions=True)


async def _consumer(app: web.Application) -> AsyncIterator[None]:
    settings, bus = app[SETTINGS], app[BUS]
    router = handlers.Router(
        bus=bus,
        store=app[STORE],
        rules=app[RULES],
        budget_ms=settings.decision_budget_ms,
        session_ttl_s=settings.router_session_ttl_s,
        plan_ttl_s=settings.router_plan_ttl_s,
    )
    await bus.consume(
        ROUTER_EVENTS,
        functools.partial(handlers.handle_event, router),
        prefetch=settings.router_prefetch,
    )
    try:
        yield
    finally:
        await bus.stop_consuming(grace_s=app[SETTINGS].shutdown_grace_s)
