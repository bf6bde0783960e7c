"""What users see, end to end: pushes in over HTTP (safe mode, XML), through every service,
out through WeChat's API to the simulator, on both deployments (one process per service on
RabbitMQ and Redis; one process on memory://).

Each test is one user (an openid of its own) and asserts the passive answers WeChat got and
the messages the user received, in order; the facts on the bus say when all is done.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from libs.common.schemas import (
    DecisionMade,
    InboundEvent,
    OtherMessageReceived,
    Outcome,
    Rejected,
    SendText,
    Sent,
    UserMessage,
)
from libs.common.wechat import codec
from services.demo.wire import Wire
from services.shipped_images import returns_card, size_chart
from services.simulator.pusher import PushResult, new_msg_id
from services.simulator.users import Delivered
from tests.e2e.deployments import System
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DEADLINE_S = 60.0
"""Per wait; a pass is usually quick. A reply of several messages waits on their order."""

WELCOME = "您好，欢迎光临小店客服！"
TRANSFER_NOTICE = "正在为您转接人工客服，请稍候…"
FALLBACK = "收到您的消息！"


async def received(system: System, openid: str, count: int) -> list[Delivered]:
    """The user's inbox once it holds ``count`` messages."""
    return await eventually(
        lambda: system.sim.inbox(openid),
        lambda inbox: len(inbox) >= count,
        deadline_s=DEADLINE_S,
        what=f"{count} message(s) for {openid} ({system.kind})",
    )


async def event_of(system: System, openid: str, msg_id: int | None = None) -> InboundEvent:
    """The event ingress published for the user's push (the last one, or the MsgId's)."""

    def probe() -> InboundEvent | None:
        events = system.observer.of(InboundEvent, openid=openid)  # type: ignore[type-abstract]
        if msg_id is not None:
            events = [e for e in events if isinstance(e, UserMessage) and e.msg_id == msg_id]
        return events[-1] if events else None

    found = await eventually(probe, deadline_s=DEADLINE_S, what=f"the event ({system.kind})")
    assert found is not None
    return found


async def decision_of(system: System, event: InboundEvent) -> DecisionMade:
    def probe() -> DecisionMade | None:
        found = [d for d in system.observer.of(DecisionMade) if d.event_id == event.id]
        return found[0] if found else None

    found = await eventually(probe, deadline_s=DEADLINE_S, what=f"the decision ({system.kind})")
    assert found is not None
    return found


async def outcome_of(system: System, command_id: str) -> Outcome:
    def probe() -> Outcome | None:
        found = [o for o in system.observer.of(Outcome) if o.command_id == command_id]
        return found[0] if found else None

    found = await eventually(probe, deadline_s=DEADLINE_S, what=f"an outcome ({system.kind})")
    assert found is not None
    return found


async def next_second(system: System) -> None:
    """Until WeChat's clock shows a later second than now (CreateTime has whole seconds)."""
    now = int(system.sim.now())
    await eventually(system.sim.now, lambda t: int(t) > now, what="the next second")


def texts(inbox: list[Delivered]) -> list[str]:
    return [str(d.body.get("content", "")) for d in inbox if d.msgtype == "text"]


def accepted(result: PushResult, outcome: str = "success") -> None:
    assert result.outcome == outcome, result
    assert result.attempts == 1, result.answers


# --- the conversation ----------------------------------------------------------------------------


async def test_opening_the_chat_is_welcomed_once_a_day(system: System) -> None:
    openid = system.new_openid()
    async with system.pusher(openid) as wechat:
        accepted(await wechat.enter_session("goods-page"))
        (welcome,) = await received(system, openid, 1)
        assert welcome.msgtype == "text"
        assert str(welcome.body["content"]).startswith(WELCOME)
        first = await decision_of(system, await event_of(system, openid))
        assert (first.rule, first.transfer) == ("welcome", False)

        # Entering again the same day: a fact, but nothing more for the user to read. (In
        # a later second: WeChat's CreateTime is what tells two entries from a retry.)
        await next_second(system)
        accepted(await wechat.enter_session("goods-page"))

        def second_entry() -> DecisionMade | None:
            found = [d for d in system.observer.of(DecisionMade, openid=openid) if d.id != first.id]
            return found[0] if found else None

        again = await eventually(second_entry, deadline_s=DEADLINE_S, what="the second decision")
        assert again is not None
        assert (again.rule, again.actions) == ("quiet-events", ["ignore"])
    assert len(system.sim.inbox(openid)) == 1


async def test_a_frequent_question_is_answered_in_order(system: System) -> None:
    openid = system.new_openid()
    async with system.pusher(openid) as wechat:
        accepted(await wechat.text("衣服小了，能换尺码吗？"))
        note, chart, card = await received(system, openid, 3)
        # Its second question only once the first is answered: answers keep the user's order.
        accepted(await wechat.text("尺码怎么选"))
        inbox = await received(system, openid, 5)

    assert [d.msgtype for d in inbox] == ["text", "image", "miniprogrampage", "text", "image"]
    assert "尺码表" in str(note.body["content"])
    assert (card.body["title"], card.body["pagepath"]) == (
        "申请换货",
        "pages/orders/returns?type=exchange",
    )
    # The media service uploaded the assets the rules name; WeChat holds those very bytes.
    media = system.sim.media.items
    tint = system.asset_tint
    assert media[chart.body["media_id"]].data == size_chart(tint)
    assert media[card.body["thumb_media_id"]].data == returns_card(tint)
    assert media[inbox[4].body["media_id"]].data == size_chart(tint)
    assert "尺码表" in texts(inbox)[1]


async def test_asking_for_a_human_transfers_the_conversation(system: System) -> None:
    openid = system.new_openid()
    async with system.pusher(openid) as wechat:
        accepted(await wechat.text("转人工"), "transfer_customer_service")
        (notice,) = await received(system, openid, 1)
        assert notice.body == {"content": TRANSFER_NOTICE}
        decision = await decision_of(system, await event_of(system, openid))
        assert (decision.rule, decision.transfer) == ("agent", True)

        # While the user waits for an agent, WeChat pushes their messages to us: handed over
        # again, and not answered by the machine.
        result = await wechat.text("还在吗？")
        accepted(result, "transfer_customer_service")
        waiting = await decision_of(system, await event_of(system, openid, result.msg_id))
        assert (waiting.rule, waiting.actions, waiting.transfer) == (
            "waiting-for-agent",
            ["transfer"],
            True,
        )
    assert len(system.sim.inbox(openid)) == 1


async def test_a_push_sent_again_by_wechat_is_one_event(system: System) -> None:
    openid = system.new_openid()
    async with system.pusher(openid) as pusher:
        wire = Wire(pusher, system.sim)
        gh_id = system.sim.config.gh_id

        def message(content: str) -> codec.TextMessage:
            return codec.TextMessage(
                to_user=gh_id,
                from_user=openid,
                create_time=int(system.sim.now()),
                content=content,
                msg_id=new_msg_id(),
            )

        # One after the other, as WeChat retries a slow answer: the very same request.
        push = wire.build(message("你好"))
        answers = [await wire.send(push, first=n == 0) for n in range(3)]
        # All at once, as when WeChat gave up on an answer still being made.
        racing = wire.build(message("在吗"))
        wire.sim.user_action(openid, "message", float(racing.message.create_time))
        answers += await asyncio.gather(*(wire.send(racing, first=False) for _ in range(3)))
        inbox = await received(system, openid, 2)

    assert [a.kind for a in answers] == ["success"] * 6, answers
    assert texts(inbox) == [texts(inbox)[0]] * 2
    assert texts(inbox)[0].startswith(FALLBACK)
    # The facts travel on their own: the observer may hear them after WeChat delivered.
    await eventually(
        lambda: len(system.observer.of(Sent, openid=openid)),
        lambda n: n >= 2,
        deadline_s=DEADLINE_S,
        what="both outcome facts",
    )
    for sent in (push, racing):
        assert isinstance(sent.message, codec.TextMessage)
        events = [e for e in system.observer.of(UserMessage) if e.msg_id == sent.message.msg_id]
        assert len(events) == 1
        decisions = await eventually(
            lambda eid=events[0].id: [
                d for d in system.observer.of(DecisionMade) if d.event_id == eid
            ],
            deadline_s=DEADLINE_S,
            what="the decision fact",
        )
        assert [d.rule for d in decisions] == ["fallback"]
    assert len(system.observer.of(Sent, openid=openid)) == 2


async def test_the_reply_window_refuses_the_sixth_message(system: System) -> None:
    openid = system.new_openid()
    async with system.pusher(openid) as wechat:
        accepted(await wechat.text("你好"))
        await received(system, openid, 1)
        # The shop's own system sends updates, one command at a time, as an extension may.
        outcomes: list[Outcome] = []
        for n in range(1, 6):
            command = SendText(
                appid=system.appid,
                openid=openid,
                correlation_id=f"e2e-quota-{openid}",
                content=f"订单更新 {n}",
            )
            await system.bus.publish(command)
            outcomes.append(await outcome_of(system, command.id))
        inbox = await received(system, openid, 5)

        assert [type(o) for o in outcomes] == [Sent, Sent, Sent, Sent, Rejected]
        refused = outcomes[-1]
        assert isinstance(refused, Rejected)
        assert refused.reason == "quota_exhausted"
        # Refused by the sender's own count: WeChat was not called in vain.
        assert refused.errcode is None
        assert texts(inbox)[1:] == [f"订单更新 {n}" for n in range(1, 5)]

        # The user writes again: a new window, and the answer gets through.
        accepted(await wechat.text("谢谢"))
        inbox = await received(system, openid, 6)
    assert texts(inbox)[-1].startswith("不客气")


async def test_an_unknown_message_type_reaches_the_extension(system: System) -> None:
    openid = system.new_openid()
    async with system.pusher(openid) as wechat:
        accepted(await wechat.text("你好"))
        await received(system, openid, 1)
        accepted(await wechat.unknown_message("voice", {"MediaId": "m-voice-1", "Format": "amr"}))
        await received(system, openid, 2)

    (voice,) = system.observer.of(OtherMessageReceived, openid=openid)
    assert (voice.msg_type, voice.routing_key()) == ("voice", "msg.voice")
    assert voice.fields.get("Format") == "amr"

    async with aiohttp.ClientSession() as http:

        async def conversation() -> dict[str, Any]:
            url = f"{system.history_url}/conversations/{openid}"
            async with http.get(url, params={"appid": system.appid}) as response:
                return dict(await response.json()) if response.status == 200 else {}

        def complete(body: dict[str, Any]) -> bool:
            replies = [e for e in body.get("entries", []) if e["kind"] == "reply"]
            return len(replies) == 2 and all(r["outcome"] is not None for r in replies)

        body = await eventually(
            conversation, complete, deadline_s=DEADLINE_S, what=f"history ({system.kind})"
        )
    said = [e["routing_key"] for e in body["entries"] if e["who"] == "user"]
    assert said == ["msg.text", "msg.voice"]
    voice_entry = next(e for e in body["entries"] if e["routing_key"] == "msg.voice")
    assert voice_entry["message"]["msg_type"] == "voice"
    assert voice_entry["id"] == voice.id
    outcomes = [e["outcome"]["type"] for e in body["entries"] if e["kind"] == "reply"]
    assert outcomes == ["outbound.sent", "outbound.sent"]
