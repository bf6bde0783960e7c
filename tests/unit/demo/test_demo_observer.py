"""The demo's observer sees every fact and command once, and its waits end or say what was
missing."""

from __future__ import annotations

import pytest

from libs.common.bus.memory import MemoryBus
from libs.common.schemas import SendText, TextReceived
from services.demo.observer import Observer

APPID = "wx5f2a0c4e9b7d1386"


def said(openid: str, msg_id: int) -> TextReceived:
    return TextReceived(
        appid=APPID,
        openid=openid,
        correlation_id="c",
        to_user="gh_1",
        create_time=1,
        msg_id=msg_id,
        content="你好",
    )


async def test_facts_and_commands_are_seen_in_order_and_filtered() -> None:
    bus = MemoryBus.fresh()
    observer = Observer(bus, queue="wxkf.demo.unit")
    await observer.start()
    first, other = said("oA", 1), said("oB", 2)
    command = SendText(appid=APPID, openid="oA", correlation_id="c", content="您好")
    for msg in (first, other, command):
        await bus.publish(msg)
    seen = await observer.wait_for(
        lambda: observer.seen if len(observer.seen) == 3 else None, deadline_s=5, what="all"
    )
    assert [s.routing_key for s in seen] == ["msg.text", "msg.text", "send.text"]
    assert observer.of(TextReceived, openid="oA") == [first]
    assert observer.of(SendText) == [command]
    await bus.stop_consuming()
    await bus.close()


async def test_a_wait_that_runs_out_says_what_never_happened() -> None:
    observer = Observer(MemoryBus.fresh(), queue="wxkf.demo.unit")
    await observer.start()
    with pytest.raises(TimeoutError, match=r"the welcome within 0\.05 s"):
        await observer.wait_for(lambda: None, deadline_s=0.05, what="the welcome")
    assert await observer.wait_for(lambda: [1], deadline_s=0.05, what="x") == [1]
    await observer.bus.close()
