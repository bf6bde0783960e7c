"""The aiohttp application every service starts from, and the internal one beside it.

A service's own app (:func:`base_app`) serves only what the service is for: the push path,
the media API. Health, readiness and metrics are the internal port's (:func:`internal_app`,
``WXKF_INTERNAL_PORT``), one per process whatever the apps it runs: ``/healthz`` says the
process is alive; ``/readyz`` pings every resource each app holds (the bus and the store when
set, and any check added with :func:`add_readiness_check`) and names the first that fails;
``/metrics`` is prometheus-client's exposition of the default registry.

Per request the middlewares bind a fresh logging context (service, request id), record the
RED metrics by route template, and turn an unhandled exception into a 500 JSON answer.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

from libs.common.keys import BUS, SERVICE, STORE
from libs.common.observability.metrics import LATENCY_BUCKETS_S

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadinessCheck = Callable[[], Awaitable[object]]
"""Raises (or times out) when the resource is not usable now."""

READINESS = web.AppKey("readiness", dict[str, ReadinessCheck])
"""Extra readiness checks by name, beside the bus and store pings."""

READY_WITH_ONE_OF = web.AppKey("ready_with_one_of", frozenset[str])
"""Checks of which one passing is enough (ingress serves pushes with the bus or the store)."""

READINESS_TIMEOUT_S = 2.0
"""Per check: a probe must answer before the kubelet's own timeout (1 s by default is too
short for a broker round trip under load; probes here use 3 s)."""

REQUEST_ID_HEADER = "X-Request-Id"
_GOOD_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
UNMATCHED_ROUTE = "unmatched"

HTTP_REQUESTS = Counter(
    "wxkf_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["service", "route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "wxkf_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["service", "route"],
    buckets=LATENCY_BUCKETS_S,
)
HTTP_UNHANDLED = Counter(
    "wxkf_http_unhandled_errors_total",
    "Requests whose handler raised an unexpected exception (answered 500).",
    ["service", "route"],
)
READINESS_FAILURES = Counter(
    "wxkf_http_readiness_failures_total",
    "Readiness probes answered 503, by the check that failed.",
    ["service", "check"],
)


SERVES = web.AppKey("serves", tuple[web.Application, ...])
"""The apps whose health and readiness an internal app answers for."""


def base_app(service: str) -> web.Application:
    """A new application for ``service``: the middlewares, no route of its own (see
    :func:`internal_app` for health, readiness and metrics)."""
    app = web.Application(middlewares=[_context_middleware, _metrics_middleware, _errors])
    app[SERVICE] = service
    app[READINESS] = {}
    return app


def internal_app(apps: Sequence[web.Application]) -> web.Application:
    """``/healthz``, ``/readyz`` (over every one of ``apps``) and ``/metrics``: the internal
    port of a process running ``apps``."""
    internal = web.Application(middlewares=[_context_middleware, _metrics_middleware, _errors])
    internal[SERVICE] = "+".join(dict.fromkeys(app[SERVICE] for app in apps))
    internal[SERVES] = tuple(apps)
    internal[READINESS] = {}
    internal.router.add_get("/healthz", healthz)
    internal.router.add_get("/readyz", readyz)
    internal.router.add_get("/metrics", metrics_handler())
    return internal


def metrics_handler() -> Handler:
    """prometheus-client's own aiohttp handler (0.21+), else the same page by hand."""
    try:
        from prometheus_client.aiohttp import make_aiohttp_handler
    except ImportError:  # an older prometheus-client, as pyproject allows
        return metrics_fallback
    return make_aiohttp_handler()


async def metrics_fallback(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_readiness_check(app: web.Application, name: str, check: ReadinessCheck) -> None:
    """Add a check that ``/readyz`` runs after the bus and store pings."""
    if name in app[READINESS] or name in ("bus", "store"):
        raise ValueError(f"a readiness check named {name!r} is already registered")
    app[READINESS][name] = check


def readiness_checks(app: web.Application) -> dict[str, ReadinessCheck]:
    """The pings of whatever resources the app holds now, then the extra checks."""
    checks: dict[str, ReadinessCheck] = {}
    bus = app.get(BUS)
    if bus is not None:
        checks["bus"] = bus.ping
    store = app.get(STORE)
    if store is not None:
        checks["store"] = store.ping
    if READINESS in app:
        extra: dict[str, ReadinessCheck] = app[READINESS]
        checks.update(extra)
    return checks


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    degraded: dict[str, str] = {}
    for app in request.app[SERVES]:
        failed, blocking = await _readiness(app)
        if blocking is not None:
            READINESS_FAILURES.labels(app[SERVICE], blocking).inc()
            return web.json_response(
                {
                    "status": "unavailable",
                    "service": app[SERVICE],
                    "check": blocking,
                    "reason": failed[blocking],
                },
                status=503,
            )
        degraded.update(failed)
    return web.json_response({"status": "ok", **({"degraded": degraded} if degraded else {})})


async def _readiness(app: web.Application) -> tuple[dict[str, str], str | None]:
    """The checks of ``app`` that failed (name: reason), and the one that makes it unready."""
    either = app.get(READY_WITH_ONE_OF, frozenset())
    failed: dict[str, str] = {}
    for name, check in readiness_checks(app).items():
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_S):
                await check()
        except Exception as exc:  # noqa: BLE001 - any failure of a check means "not ready"
            reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            log.warning(
                "http.not_ready", service=app[SERVICE], check=name, reason=reason, error=str(exc)
            )
            failed[name] = reason
            if name not in either:
                break
    blocking = [n for n in failed if n not in either]
    if not blocking and either and either <= failed.keys():
        blocking = [n for n in failed if n in either]  # every one of them failed
    return failed, (blocking[0] if blocking else None)


def route_of(request: web.Request) -> str:
    """The matched resource's template (``/media/{id}``), never the raw path."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED_ROUTE
    return resource.canonical


@web.middleware
async def _context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    structlog.contextvars.clear_contextvars()
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _GOOD_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(
        service=request.config_dict[SERVICE], request_id=request_id
    )
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def _metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    service, route = request.config_dict[SERVICE], route_of(request)
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - start
        HTTP_REQUESTS.labels(service, route, request.method, str(status)).inc()
        HTTP_DURATION.labels(service, route).observe(elapsed)
        log.debug(
            "http.request",
            route=route,
            method=request.method,
            status=status,
            duration_ms=round(elapsed * 1000, 3),
        )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    # The HTTP edge: log, count, answer 500, never a traceback to the client.
    except Exception:
        route = route_of(request)
        HTTP_UNHANDLED.labels(request.config_dict[SERVICE], route).inc()
        log.exception("http.unhandled_error", route=route, method=request.method)
        return web.json_response({"error": "internal"}, status=500)
