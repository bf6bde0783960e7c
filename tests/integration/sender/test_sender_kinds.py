"""Every kind of outbound message, from its send command on the bus to what WeChat received:
each arrives once, in the decision's order, with every field it was given."""

from __future__ import annotations

import uuid

from libs.common.schemas import (
    SendCommand,
    SendImage,
    SendLink,
    SendMiniProgramPage,
    SendText,
    Sent,
)
from services.simulator.config import DEMO_APPID
from tests.integration.sender.conftest import Rig

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 128


async def test_every_message_kind_arrives_with_its_fields(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    picture = rig.sim.upload_media(PNG).media_id
    thumb = rig.sim.upload_media(PNG + b"thumb").media_id
    cause = uuid.uuid4().hex
    common = {"appid": DEMO_APPID, "openid": user, "correlation_id": cause, "cause_id": cause}
    commands: list[SendCommand] = [
        SendText(**common, seq=0, total=4, content="您好 👋 <b>&amp;</b>"),
        SendImage(**common, seq=1, total=4, media_id=picture),
        SendLink(
            **common,
            seq=2,
            total=4,
            title="尺码表",
            description="Sizes, in centimetres",
            url="https://example.com/sizes?cm=1&lang=zh",
            thumb_url="https://example.com/sizes.png",
        ),
        SendMiniProgramPage(
            **common,
            seq=3,
            total=4,
            title="我的订单",
            pagepath="pages/orders/index?tab=open",
            thumb_media_id=thumb,
        ),
    ]
    await rig.send(*reversed(commands))  # the order is the decision's, not the bus's

    outcomes = await rig.settled(commands)

    assert [type(outcomes[c.id]) for c in commands] == [Sent] * 4
    assert [outcomes[c.id].msgtype for c in commands] == [
        "text",
        "image",
        "link",
        "miniprogrampage",
    ]
    assert [(d.msgtype, d.body) for d in rig.inbox(user)] == [
        ("text", {"content": "您好 👋 <b>&amp;</b>"}),
        ("image", {"media_id": picture}),
        (
            "link",
            {
                "title": "尺码表",
                "description": "Sizes, in centimetres",
                "url": "https://example.com/sizes?cm=1&lang=zh",
                "thumb_url": "https://example.com/sizes.png",
            },
        ),
        (
            "miniprogrampage",
            {
                "title": "我的订单",
                "pagepath": "pages/orders/index?tab=open",
                "thumb_media_id": thumb,
            },
        ),
    ]
