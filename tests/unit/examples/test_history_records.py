"""Every bus message becomes a record: its kind, who it is from, its key and its body."""

from __future__ import annotations

import msgspec
import pytest
from history_helpers import (
    APPID,
    T0,
    archived,
    decision,
    entered,
    failed,
    new_openid,
    other_event,
    rejected,
    reply,
    sent,
    text,
    typing,
    unknown,
)

from examples.extension.records import record_of, who
from libs.common.schemas import AnyMessage, decode


def _all(openid: str) -> list[tuple[AnyMessage, str, str, str]]:
    """(message, kind, type, routing key) for one of each."""
    msg = text(openid)
    cmd = reply(msg, "hello", at=T0 + 2)
    return [
        (msg, "message", "msg.text", "msg.text"),
        (entered(openid), "event", "event.user_enter_tempsession", "event.user_enter_tempsession"),
        (other_event(openid), "event", "event.other", "event.debug_demo"),
        (unknown(openid), "message", "msg.other", "msg.voice"),
        (decision(msg, at=T0 + 1), "decision", "decision", "decision.reply"),
        (cmd, "reply", "send.text", "send.text"),
        (typing(msg, at=T0 + 1), "typing", "send.typing", "send.typing"),
        (sent(cmd, at=T0 + 3), "outcome", "outbound.sent", "outbound.sent.text"),
        (
            rejected(cmd, at=T0 + 3),
            "outcome",
            "outbound.rejected",
            "outbound.rejected.quota_exhausted",
        ),
        (failed(cmd, at=T0 + 3), "outcome", "outbound.failed", "outbound.failed.text"),
        (archived(msg, at=T0 + 4), "media", "media.archived", "media.archived"),
    ]


@pytest.mark.parametrize("index", range(11))
def test_each_message_has_its_kind_type_and_key(index: int) -> None:
    msg, kind, type_, key = _all(new_openid())[index]
    record = record_of(msg)
    assert (record.kind, record.type, record.routing_key) == (kind, type_, key)
    assert (record.id, record.appid, record.openid) == (msg.id, APPID, msg.openid)
    assert (record.time_ms, record.correlation_id) == (msg.time_ms, msg.correlation_id)
    # The body is the message itself: decoding it gives back an equal message.
    assert decode(record.body.encode()) == msg


def test_only_outcomes_name_a_command() -> None:
    for msg, kind, _, _ in _all(new_openid()):
        record = record_of(msg)
        if kind == "outcome":
            assert record.command_id is not None
            assert record.command_id == msgspec.json.decode(record.body)["command_id"]
        else:
            assert record.command_id is None


def test_unknown_message_type_keeps_its_raw_fields() -> None:
    record = record_of(unknown(new_openid(), msg_type="voice"))
    body = msgspec.json.decode(record.body)
    assert body["msg_type"] == "voice"
    assert body["fields"] == {"MediaId": "m-voice-1", "Format": "amr", "Recognition": ""}


def test_user_says_messages_and_events_wxkf_says_the_rest() -> None:
    assert who("message") == who("event") == "user"
    for kind in ("decision", "reply", "typing", "outcome", "media", "other"):
        assert who(kind) == "wxkf"
