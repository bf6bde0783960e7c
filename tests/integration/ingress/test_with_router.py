"""Ingress with the real router and the shipped rules: the decision RPC end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from libs.common.runner import running
from libs.common.settings import Secret
from libs.common.wechat import replies
from libs.common.wechat.codec import Format
from libs.common.wechat.crypto import Cipher
from services.router.app import create_app as create_router
from services.router.settings import SHIPPED_RULES, RouterSettings
from tests.integration.ingress.harness import (
    AES_KEY,
    APPID,
    TOKEN,
    Backend,
    Tap,
    counts,
    ingress,
    pusher,
    settings,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def router(backend: Backend) -> AsyncIterator[None]:
    conf = RouterSettings(
        appid=APPID,
        bus_url=Secret(backend.bus_url),
        rules=str(SHIPPED_RULES),
    )
    app = create_router(conf, store=await backend.store())
    async with running([(app, None)], host="127.0.0.1", shutdown_grace_s=1.0):
        yield


@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.usefixtures("router")
async def test_the_router_decides_the_answer(backend: Backend, fmt: Format) -> None:
    conf = settings(backend)
    bus = await backend.bus()
    tap = await Tap(backend, bus).start()
    async with ingress(backend, conf) as url, pusher(url, conf, fmt=fmt) as wechat:
        entered = await wechat.enter_session("from-button")
        asked = await wechat.text("什么时候发货？")
        wants_agent = await wechat.text("转人工")
    assert entered.outcome == "success"
    assert asked.outcome == "success"
    assert wants_agent.outcome == "transfer_customer_service", wants_agent
    reply = replies.read_reply(
        wants_agent.answers[-1].body,
        token=TOKEN,
        cipher=Cipher.from_key(AES_KEY, APPID),
        fmt=fmt,
    )
    assert reply.kind == "transfer_customer_service"
    assert reply.encrypted
    events = await tap.events(at_least=3)
    assert sorted(e.routing_key() for e in events) == [
        "event.user_enter_tempsession",
        "msg.text",
        "msg.text",
    ]
    assert set(counts(events).values()) == {1}
