"""A parsed push (the codec's Structs) as the bus event it becomes (the schema's Structs).

Ingress publishes these; ``wxkf rules test --push`` shows what the router would do with one.

The event id is derived from the push's dedupe key, so every attempt of one push, on any
replica, publishes the same id; the correlation id that follows the conversation turn through
every service is that id too.
"""

from __future__ import annotations

from typing import TypedDict

from libs.common import schemas
from libs.common.schemas import (
    ImageReceived,
    InboundEvent,
    MiniProgramPageReceived,
    OtherEventReceived,
    OtherMessageReceived,
    SessionEntered,
    TextReceived,
)
from libs.common.wechat import codec


class _Envelope(TypedDict):
    id: str
    correlation_id: str
    appid: str
    openid: str
    to_user: str
    create_time: int


def dedupe_parts(msg: codec.Message, *, appid: str) -> tuple[str, ...]:
    """What makes two pushes the same push (WECHAT.md §6): MsgId, or sender+time+event."""
    if isinstance(msg, codec.UnknownMessage):
        raw = msg.fields.get("MsgId")
        if isinstance(raw, str | int) and not isinstance(raw, bool):
            # Unknown types may carry a MsgId that is not a number: dedupe on its text.
            return ("msg", appid, str(raw).strip())
        # No MsgId at all: the event rule is the only identity WeChat gives such a push.
        return ("msg", appid, msg.from_user, str(msg.create_time), msg.msg_type)
    if isinstance(msg, codec.EnterSessionEvent | codec.UnknownEvent):
        return ("event", appid, msg.from_user, str(msg.create_time), msg.event)
    return ("msg", appid, str(msg.msg_id))


def event_id(msg: codec.Message, *, appid: str) -> str:
    return schemas.derived_id("push", *dedupe_parts(msg, appid=appid))


def to_event(msg: codec.Message, *, appid: str) -> InboundEvent:
    """The bus event for ``msg``; its ``id`` and ``correlation_id`` are :func:`event_id`."""
    eid = event_id(msg, appid=appid)
    common = _Envelope(
        id=eid,
        correlation_id=eid,
        appid=appid,
        openid=msg.from_user,
        to_user=msg.to_user,
        create_time=msg.create_time,
    )
    match msg:
        case codec.TextMessage():
            return TextReceived(**common, msg_id=msg.msg_id, content=msg.content)
        case codec.ImageMessage():
            return ImageReceived(
                **common, msg_id=msg.msg_id, pic_url=msg.pic_url, media_id=msg.media_id
            )
        case codec.MiniProgramPageMessage():
            return MiniProgramPageReceived(
                **common,
                msg_id=msg.msg_id,
                title=msg.title,
                page_appid=msg.app_id,
                page_path=msg.page_path,
                thumb_url=msg.thumb_url,
                thumb_media_id=msg.thumb_media_id,
            )
        case codec.EnterSessionEvent():
            return SessionEntered(**common, session_from=msg.session_from)
        case codec.UnknownMessage():
            return OtherMessageReceived(
                **common,
                # 0 when WeChat sent no integer MsgId; the raw value stays in ``fields``.
                msg_id=msg.msg_id or 0,
                msg_type=msg.msg_type,
                fields=msg.fields,
            )
        case codec.UnknownEvent():
            return OtherEventReceived(**common, event=msg.event, fields=msg.fields)
