"""base_app and internal_app: the middlewares; health, readiness and metrics on the internal
app only; on a real test server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from structlog.testing import capture_logs

from libs.common import web as web_module
from libs.common.bus.memory import MemoryBus
from libs.common.keys import BUS, STORE
from libs.common.store import StoreError
from libs.common.store.memory import MemoryStore
from libs.common.web import add_readiness_check, base_app, internal_app


@pytest.fixture
def service() -> str:
    # A fresh label per test keeps metric deltas independent of other tests.
    return f"svc{uuid.uuid4().hex[:8]}"


async def serve(app: web.Application) -> TestClient:
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client(service: str) -> AsyncIterator[TestClient]:
    app = base_app(service)

    async def item(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"]})

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret detail that must not reach the client")

    async def bad(request: web.Request) -> web.Response:
        raise web.HTTPBadRequest(text="no")

    async def context(request: web.Request) -> web.Response:
        seen = dict(structlog.contextvars.get_contextvars())
        structlog.contextvars.bind_contextvars(leftover="from an earlier request")
        return web.json_response(seen)

    app.router.add_get("/items/{id}", item)
    app.router.add_get("/boom", boom)
    app.router.add_get("/bad", bad)
    app.router.add_get("/context", context)
    client = await serve(app)
    yield client
    await client.close()


@pytest.fixture
async def internal(client: TestClient) -> AsyncIterator[TestClient]:
    served = await serve(internal_app([client.server.app]))
    yield served
    await served.close()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_service_port_serves_no_health_readiness_or_metrics(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status == 404


async def test_healthz_is_ok(internal: TestClient) -> None:
    resp = await internal.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_without_resources_is_ok(internal: TestClient) -> None:
    resp = await internal.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


class FailingStore(MemoryStore):
    async def ping(self) -> None:
        raise StoreError("redis ping on cache:6379/0 failed: Connection refused")


async def test_readyz_pings_the_bus_and_the_store(service: str) -> None:
    app = base_app(service)
    app[BUS] = MemoryBus.fresh()
    app[STORE] = MemoryStore()
    client = await serve(internal_app([app]))
    try:
        assert (await client.get("/readyz")).status == 200
    finally:
        await client.close()


async def test_readyz_names_the_failing_store(service: str) -> None:
    app = base_app(service)
    app[BUS] = MemoryBus.fresh()
    app[STORE] = FailingStore()
    client = await serve(internal_app([app]))
    try:
        with capture_logs() as logs:
            resp = await client.get("/readyz")
        assert resp.status == 503
        assert await resp.json() == {
            "status": "unavailable",
            "service": service,
            "check": "store",
            "reason": "StoreError",
        }
        assert [e["check"] for e in logs if e["event"] == "http.not_ready"] == ["store"]
        assert sample("wxkf_http_readiness_failures_total", service=service, check="store") == 1
    finally:
        await client.close()


async def test_readyz_names_a_closed_bus(service: str) -> None:
    bus = MemoryBus.fresh()
    await bus.close()
    app = base_app(service)
    app[BUS] = bus
    app[STORE] = MemoryStore()
    client = await serve(internal_app([app]))
    try:
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["check"] == "bus"
    finally:
        await client.close()


async def test_readyz_runs_added_checks_and_bounds_them(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_module, "READINESS_TIMEOUT_S", 0.05)
    app = base_app(service)
    never = asyncio.Event()
    add_readiness_check(app, "rules", never.wait)
    client = await serve(internal_app([app]))
    try:
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert await resp.json() == {
            "status": "unavailable",
            "service": service,
            "check": "rules",
            "reason": "timeout",
        }
    finally:
        await client.close()


def test_a_readiness_check_name_is_registered_once(service: str) -> None:
    app = base_app(service)

    async def ok() -> None:
        return None

    add_readiness_check(app, "rules", ok)
    with pytest.raises(ValueError, match="'rules' is already registered"):
        add_readiness_check(app, "rules", ok)
    with pytest.raises(ValueError, match="'store'"):
        add_readiness_check(app, "store", ok)


async def test_readyz_answers_for_every_app_of_the_process(service: str) -> None:
    ready, failing = base_app(service), base_app(service + "b")
    failing[STORE] = FailingStore()
    client = await serve(internal_app([ready, failing]))
    try:
        resp = await client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert (body["service"], body["check"]) == (service + "b", "store")
    finally:
        await client.close()


async def test_metrics_count_by_route_template_not_raw_path(
    client: TestClient, internal: TestClient, service: str
) -> None:
    for item in ("1", "2", "3"):
        assert (await client.get(f"/items/{item}")).status == 200
    labels = {"service": service, "route": "/items/{id}"}
    assert sample("wxkf_http_requests_total", **labels, method="GET", status="200") == 3
    assert sample("wxkf_http_request_duration_seconds_count", **labels) == 3
    resp = await internal.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert f'route="/items/{{id}}",service="{service}",status="200"' in text
    assert "/items/1" not in text


async def test_unknown_paths_share_one_route_label(client: TestClient, service: str) -> None:
    for path in ("/nope", "/nope/again", "/x?y=1"):
        assert (await client.get(path)).status == 404
    assert (
        sample(
            "wxkf_http_requests_total",
            service=service,
            route="unmatched",
            method="GET",
            status="404",
        )
        == 3
    )


async def test_http_errors_pass_through_with_their_status(client: TestClient, service: str) -> None:
    resp = await client.get("/bad")
    assert resp.status == 400
    assert await resp.text() == "no"
    labels = {"service": service, "route": "/bad", "method": "GET", "status": "400"}
    assert sample("wxkf_http_requests_total", **labels) == 1


async def test_an_unhandled_exception_is_a_500_json_without_details(
    client: TestClient, service: str
) -> None:
    with capture_logs() as logs:
        resp = await client.get("/boom")
    assert resp.status == 500
    assert await resp.json() == {"error": "internal"}
    assert "secret detail" not in await resp.text()
    [event] = [e for e in logs if e["event"] == "http.unhandled_error"]
    assert event["route"] == "/boom"
    assert event["exc_info"] is True
    assert sample("wxkf_http_unhandled_errors_total", service=service, route="/boom") == 1
    labels = {"service": service, "route": "/boom", "method": "GET", "status": "500"}
    assert sample("wxkf_http_requests_total", **labels) == 1


async def test_each_request_gets_a_fresh_context_with_service_and_request_id(
    client: TestClient, service: str
) -> None:
    first = await client.get("/context", headers={"X-Request-Id": "abc-123"})
    assert first.headers["X-Request-Id"] == "abc-123"
    assert await first.json() == {"service": service, "request_id": "abc-123"}
    second = await client.get("/context")
    body = await second.json()
    assert "leftover" not in body
    assert body["request_id"] == second.headers["X-Request-Id"]
    assert len(body["request_id"]) == 32


async def test_a_malformed_request_id_is_replaced(client: TestClient) -> None:
    resp = await client.get("/context", headers={"X-Request-Id": "bad id\twith spaces" * 20})
    request_id = resp.headers["X-Request-Id"]
    assert request_id != "bad id\twith spaces" * 20
    assert (await resp.json())["request_id"] == request_id


async def test_errors_carry_the_request_id_too(client: TestClient) -> None:
    resp = await client.get("/bad", headers={"X-Request-Id": "r-1"})
    assert resp.headers["X-Request-Id"] == "r-1"
    resp = await client.get("/boom", headers={"X-Request-Id": "r-2"})
    assert resp.headers["X-Request-Id"] == "r-2"


async def test_the_fallback_metrics_page_matches_the_exposition_format(service: str) -> None:
    app = web.Application()
    app.router.add_get("/metrics", web_module.metrics_fallback)
    client = await serve(app)
    try:
        web_module.HTTP_REQUESTS.labels(service, "/x", "GET", "200").inc()
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
        text = await resp.text()
        assert f'wxkf_http_requests_total{{method="GET",route="/x",service="{service}"' in text
    finally:
        await client.close()
