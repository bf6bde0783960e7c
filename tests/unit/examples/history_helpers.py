"""Messages of one conversation, as the core services would publish them, for the history's
tests. Times are explicit so that order is the test's to choose."""

from __future__ import annotations

import uuid
from typing import Any

from libs.common.schemas import (
    DecisionMade,
    Failed,
    MediaArchived,
    OtherEventReceived,
    OtherMessageReceived,
    Rejected,
    SendCommand,
    SendText,
    SendTyping,
    Sent,
    SessionEntered,
    TextReceived,
    UserMessage,
    derived_id,
)

APPID = "wx00000000000000e1"
GH = "gh_00000000e1"
T0 = 1_767_225_600_000
"""2026-01-01T00:00:00Z in unix ms."""


def new_openid() -> str:
    return "o-hist-" + uuid.uuid4().hex[:12]


def _envelope(openid: str, time_ms: int, correlation_id: str | None) -> dict[str, Any]:
    return {
        "appid": APPID,
        "openid": openid,
        "time_ms": time_ms,
        "correlation_id": correlation_id or uuid.uuid4().hex,
    }


def text(openid: str, content: str = "你好", *, at: int = T0, **fields: Any) -> TextReceived:
    values: dict[str, Any] = {
        **_envelope(openid, at, None),
        "to_user": GH,
        "create_time": at // 1000,
        "msg_id": 2**62 + at,
        "content": content,
    }
    values.update(fields)
    return TextReceived(**values)


def entered(openid: str, *, at: int = T0, session_from: str = "home") -> SessionEntered:
    return SessionEntered(
        **_envelope(openid, at, None),
        to_user=GH,
        create_time=at // 1000,
        session_from=session_from,
    )


def other_event(openid: str, *, at: int = T0) -> OtherEventReceived:
    return OtherEventReceived(
        **_envelope(openid, at, None),
        to_user=GH,
        create_time=at // 1000,
        event="debug_demo",
        fields={"debug_str": "hello"},
    )


def unknown(openid: str, *, at: int = T0, msg_type: str = "voice") -> OtherMessageReceived:
    return OtherMessageReceived(
        **_envelope(openid, at, None),
        to_user=GH,
        create_time=at // 1000,
        msg_id=2**62 + at + 1,
        msg_type=msg_type,
        fields={"MediaId": "m-voice-1", "Format": "amr", "Recognition": ""},
    )


def decision(event: UserMessage | SessionEntered, *, at: int, rule: str = "faq") -> DecisionMade:
    return DecisionMade(
        **_envelope(event.openid, at, event.correlation_id),
        id=derived_id(event.id, "decision"),
        event_id=event.id,
        rule=rule,
        action="reply",
        actions=["reply"],
    )


def reply(
    event: UserMessage | SessionEntered, content: str, *, at: int, seq: int = 0, total: int = 1
) -> SendText:
    return SendText(
        **_envelope(event.openid, at, event.correlation_id),
        id=derived_id(event.id, str(seq)),
        cause_id=event.id,
        seq=seq,
        total=total,
        content=content,
    )


def typing(event: UserMessage, *, at: int) -> SendTyping:
    return SendTyping(
        **_envelope(event.openid, at, event.correlation_id),
        id=derived_id(event.id, "typing"),
        cause_id=event.id,
    )


def sent(command: SendCommand, *, at: int) -> Sent:
    return Sent(
        **_envelope(command.openid, at, command.correlation_id),
        id=derived_id(command.id, "Sent"),
        command_id=command.id,
        cause_id=command.cause_id,
        msgtype=command.msgtype,
        latency_ms=12.5,
    )


def rejected(command: SendCommand, *, at: int) -> Rejected:
    return Rejected(
        **_envelope(command.openid, at, command.correlation_id),
        id=derived_id(command.id, "Rejected"),
        command_id=command.id,
        cause_id=command.cause_id,
        msgtype=command.msgtype,
        reason="quota_exhausted",
    )


def failed(command: SendCommand, *, at: int) -> Failed:
    return Failed(
        **_envelope(command.openid, at, command.correlation_id),
        id=derived_id(command.id, "Failed"),
        command_id=command.id,
        cause_id=command.cause_id,
        msgtype=command.msgtype,
        errcode=40003,
        errmsg="invalid openid",
    )


def archived(event: UserMessage, *, at: int) -> MediaArchived:
    return MediaArchived(
        **_envelope(event.openid, at, event.correlation_id),
        event_id=event.id,
        media_id="m-image-1",
        path="2026/01/01/abc.jpg",
        sha256="ab" * 32,
        size=1234,
        content_type="image/jpeg",
    )
