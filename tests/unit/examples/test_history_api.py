"""The read API in process, on ``memory://``: the JSON shape, paging, and every refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from history_helpers import APPID, T0, decision, new_openid, reply, sent, text

from examples.extension.app import create_app
from examples.extension.keys import DB
from examples.extension.settings import HistorySettings
from libs.common.bus import Bus
from libs.common.bus.memory import MemoryBus
from libs.common.schemas import AnyMessage
from libs.common.settings import load
from libs.common.web import internal_app
from tests.support.waiting import eventually

Client = TestClient[Any, Any]


class Service:
    def __init__(
        self, app: web.Application, client: Client, internal: Client, publisher: Bus
    ) -> None:
        self.app = app
        self.client = client
        self.internal = internal
        """The internal port: health, readiness, metrics."""
        self.publisher = publisher

    async def publish(self, *messages: AnyMessage) -> None:
        for msg in messages:
            await self.publisher.publish(msg)

    async def get(self, path: str) -> tuple[int, Any]:
        response = await self.client.get(path)
        return response.status, await response.json()

    async def wait_for(self, openid: str, count: int) -> list[dict[str, Any]]:
        async def entries() -> list[dict[str, Any]]:
            status, body = await self.get(f"/conversations/{openid}")
            return body["entries"] if status == 200 else []

        return await eventually(entries, lambda e: len(e) >= count, what=f"{count} entries")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    settings = load(
        HistorySettings,
        {},
        appid=APPID,
        history_db=str(tmp_path / "history.db"),
        history_page_max=50,
    )
    bus = MemoryBus.fresh()
    publisher = bus.client()
    app = create_app(settings, bus=bus)
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    internal: Client = TestClient(TestServer(internal_app([app])))
    await internal.start_server()
    try:
        yield Service(app, client, internal, publisher)
    finally:
        await internal.close()
        await client.close()
        await publisher.close()
        await bus.close()


async def test_a_conversation_in_json(service: Service) -> None:
    openid = new_openid()
    msg = text(openid, "几点关门?", at=T0)
    answered, pending = reply(msg, "21:00", at=T0 + 2, total=2), reply(msg, "!", at=T0 + 3, seq=1)
    await service.publish(
        msg, decision(msg, at=T0 + 1), answered, pending, sent(answered, at=T0 + 4)
    )
    entries = await service.wait_for(openid, 4)
    assert [(e["who"], e["kind"], e["type"]) for e in entries] == [
        ("user", "message", "msg.text"),
        ("wxkf", "decision", "decision"),
        ("wxkf", "reply", "send.text"),
        ("wxkf", "reply", "send.text"),
    ]
    said, decided, first, second = entries
    assert said["message"]["content"] == "几点关门?"
    assert said["message"]["msg_id"] == msg.msg_id  # 64-bit, exactly
    assert "outcome" not in said
    assert "outcome" not in decided
    assert decided["message"]["rule"] == "faq"
    assert first["outcome"]["type"] == "outbound.sent"
    assert first["message"]["content"] == "21:00"
    assert second["outcome"] is None
    assert [e["at_ms"] for e in entries] == [T0, T0 + 1, T0 + 2, T0 + 3]
    status, body = await service.get(f"/conversations/{openid}")
    assert (status, body["appid"], body["openid"], body["next"]) == (200, APPID, openid, None)


async def test_pages_follow_next(service: Service) -> None:
    openid = new_openid()
    messages = [text(openid, str(i), at=T0 + i) for i in range(5)]
    await service.publish(*messages)
    await service.wait_for(openid, 5)
    seen: list[str] = []
    path = f"/conversations/{openid}?limit=2"
    while True:
        status, body = await service.get(path)
        assert status == 200
        seen += [e["id"] for e in body["entries"]]
        if body["next"] is None:
            break
        path = f"/conversations/{openid}?limit=2&after={body['next']}"
    assert seen == [m.id for m in messages]


async def test_another_app_is_asked_for_by_name(service: Service) -> None:
    openid = new_openid()
    await service.publish(text(openid, appid="wx00000000000000e2"))
    status, _ = await service.get(f"/conversations/{openid}")
    assert status == 404

    async def other() -> int:
        return (await service.get(f"/conversations/{openid}?appid=wx00000000000000e2"))[0]

    await eventually(other, lambda s: s == 200, what="the other app's conversation")


async def test_an_unknown_user_is_404_but_a_page_past_the_end_is_empty(service: Service) -> None:
    status, body = await service.get(f"/conversations/{new_openid()}")
    assert (status, body["error"]) == (404, "no_conversation")
    status, body = await service.get(f"/conversations/{new_openid()}?after=0.0")
    assert (status, body["entries"], body["next"]) == (200, [], None)


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("limit=0", "limit"),
        ("limit=51", "limit"),  # above WXKF_HISTORY_PAGE_MAX
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=%C2%B2", "limit"),  # a superscript two: a digit to Python, not a number here
        ("limit=" + "9" * 30, "limit"),
        ("after=yesterday", "after"),
        ("after=1", "after"),
        ("after=1.-2", "after"),
        ("after=99999999999999999999.1", "after"),
        ("after=1.99999999999999999999", "after"),
        ("appid=", "appid"),
        ("appid=" + "w" * 65, "appid"),
        ("appid=wx%00", "appid"),
        ("since=0", "since"),
    ],
)
async def test_bad_parameters_are_named(service: Service, query: str, names: str) -> None:
    status, body = await service.get(f"/conversations/{new_openid()}?{query}")
    assert (status, body["error"]) == (400, "bad_query")
    assert names in body["message"]


@pytest.mark.parametrize("openid", ["o" * 129, "o%00x", "o%0Ax"])
async def test_a_malformed_openid_is_refused(service: Service, openid: str) -> None:
    status, body = await service.get(f"/conversations/{openid}")
    assert (status, body["error"]) == (400, "bad_query")
    assert "openid" in body["message"]


async def test_a_database_that_fails_makes_the_service_unready(service: Service) -> None:
    response = await service.internal.get("/readyz")
    assert (response.status, (await response.json())["status"]) == (200, "ok")
    await service.app[DB].close()
    response = await service.internal.get("/readyz")
    assert (response.status, (await response.json())["check"]) == (503, "database")
    status, body = await service.get(f"/conversations/{new_openid()}")
    assert (status, body["error"]) == (503, "database_unavailable")


async def test_metrics_count_what_was_stored(service: Service) -> None:
    msg = text(new_openid())
    await service.publish(msg)
    await service.wait_for(msg.openid, 1)
    response = await service.internal.get("/metrics")
    exposition = await response.text()
    assert 'wxkf_history_records_total{kind="message",outcome="stored"}' in exposition
    assert "wxkf_history_writes_in_flight" in exposition
