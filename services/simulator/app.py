"""The simulator as an aiohttp application: WeChat's API paths plus ``/sim/`` controls.

state = SimState(SimConfig(), clock=SimClock(start=1_700_000_000, ticking=False))
async with running(create_app(state=state)) as base_url:
    ...  # point the code under test at base_url; inspect and move ``state``
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from http import HTTPStatus

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from libs.common.keys import SERVICE
from services.simulator import api, control
from services.simulator.config import SimConfig
from services.simulator.errors import ApiError, SimRequestError
from services.simulator.faults import Fault
from services.simulator.keys import STATE
from services.simulator.state import SimState

log = structlog.get_logger(__name__)

_GATEWAY_PAGE = (
    "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>"
)


def _title(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _drop(request: web.Request) -> web.Response:
    """Close the connection without a byte of answer (the returned response is never sent)."""
    if request.transport is not None:
        request.transport.close()
    return web.Response()


async def _answer(request: web.Request, handler: Handler, state: SimState) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except ApiError as err:
        state.stats.count(request.path, err.errcode)
        return api.json_answer(err.body())
    except web.HTTPException:
        raise
    except Exception:  # the edge: any bug becomes WeChat's "system error", logged and counted
        log.exception("sim.api.failed", path=request.path)
        state.stats.count(request.path, -1)
        return api.json_answer(ApiError(-1).body())
    state.stats.count(request.path, 0)
    return resp


async def _faulted(
    request: web.Request, handler: Handler, state: SimState, fault: Fault
) -> web.StreamResponse:
    state.stats.faults += 1
    path = request.path
    if fault.passes_through:
        # The call is processed at once and only its answer is late: a caller that gives up
        # waiting has still had its message delivered, the ambiguity a slow WeChat creates.
        resp = await _answer(request, handler, state)
        await asyncio.sleep(fault.latency_ms / 1000)
        if fault.accept_then_drop:
            state.stats.count(path, "dropped")
            return _drop(request)
        return resp
    await asyncio.sleep(fault.latency_ms / 1000)
    if fault.drop:
        state.stats.count(path, "dropped")
        return _drop(request)
    if fault.status is not None:
        state.stats.count(path, f"http_{fault.status}")
        return web.Response(
            status=fault.status,
            text=_GATEWAY_PAGE.format(_title(fault.status)),
            content_type="text/html",
        )
    if fault.errcode is not None:
        state.stats.count(path, fault.errcode)
        return api.json_answer(ApiError(fault.errcode, fault.errmsg).body())
    raise AssertionError(f"unhandled fault {fault!r}")  # Fault.__post_init__ rules this out


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    if request.path.startswith("/sim/"):
        try:
            return await handler(request)
        except SimRequestError as exc:
            return control.error_answer(exc)
    fault = state.faults.next(request.path) if request.path.startswith("/cgi-bin/") else None
    if fault is not None:
        return await _faulted(request, handler, state, fault)
    return await _answer(request, handler, state)


def create_app(
    config: SimConfig | None = None, *, state: SimState | None = None
) -> web.Application:
    """The simulated WeChat. Pass ``state`` to share it with the test that inspects it."""
    if state is None:
        state = SimState(config or SimConfig())
    elif config is not None and config is not state.config:
        raise ValueError("give either config or a state built with it, not both")
    app = web.Application(middlewares=[edge], client_max_size=state.config.max_body_bytes)
    app[STATE] = state
    app[SERVICE] = "sim"  # its port variable is WXKF_SIM_PORT
    api.add_routes(app)
    control.add_routes(app)
    return app


@contextlib.asynccontextmanager
async def running(
    app: web.Application, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port) and yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
