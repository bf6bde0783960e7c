"""Outcome facts are announcements: with no extension bound to ``outbound.#`` a reply is
still sent once, settled, and acked — never retried because nobody listened."""

from __future__ import annotations

import uuid

from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from libs.common.bus.memory import MemoryBus
from libs.common.schemas import SendText, TextReceived
from libs.common.settings import load
from libs.common.store.memory import MemoryStore
from libs.common.topology import SENDER_COMMANDS
from services.sender.app import create_app
from services.sender.settings import SenderSettings
from services.simulator.config import DEMO_APPID, DEMO_GH_ID, DEMO_SECRET
from services.simulator.state import SimState
from tests.integration.sender.conftest import FAST
from tests.support.metrics import sample
from tests.support.waiting import eventually


def sent_total() -> float:
    return sample("wxkf_sender_commands_total", msgtype="text", outcome="sent")


def retries_total() -> float:
    return sum(
        found.value
        for metric in REGISTRY.restricted_registry(["wxkf_sender_retries_total"]).collect()
        for found in metric.samples
        if found.name == "wxkf_sender_retries_total"
    )


async def test_a_reply_nobody_listens_for_is_sent_once_and_settled(
    sim: tuple[SimState, str],
) -> None:
    state, sim_url = sim
    bus = MemoryBus.fresh()  # the core topology only: no queue bound to outbound.#
    store = MemoryStore.shared(f"memory://unheard-{uuid.uuid4().hex}")
    settings = load(
        SenderSettings,
        {},
        appid=DEMO_APPID,
        app_secret=DEMO_SECRET,
        wechat_api_base=sim_url,
        **FAST,
    )
    server = TestServer(create_app(settings, bus=bus, store=store, clock=state.clock.now))
    await server.start_server()
    try:
        openid = f"oTest{uuid.uuid4().hex[:20]}"
        now = state.clock.now()
        state.user_message(openid, now)
        await bus.publish(
            TextReceived(
                appid=DEMO_APPID,
                openid=openid,
                correlation_id="c1",
                to_user=DEMO_GH_ID,
                create_time=int(now),
                msg_id=2**60 + 7,
                content="hello",
            )
        )
        sent_before, retries_before = sent_total(), retries_total()
        cause = uuid.uuid4().hex
        await bus.publish(
            SendText(
                appid=DEMO_APPID, openid=openid, correlation_id=cause, cause_id=cause, content="hi"
            )
        )
        await eventually(sent_total, lambda n: n == sent_before + 1, what="the send settled")
        assert [d.body.get("content") for d in state.inbox(openid)] == ["hi"]
        assert retries_total() == retries_before
        assert await bus.dead_letters(SENDER_COMMANDS.name) == []
    finally:
        await server.close()
        await bus.close()
