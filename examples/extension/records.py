"""One bus message as the history keeps it: the envelope's columns and the body as JSON.

Pure: no database, no bus. Every message the shared schema decodes has a record, a type this
version has never heard of (``msg.<new type>``, kept whole in ``OtherMessageReceived.fields``)
included, so nothing that reaches the history is dropped.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from libs.common.schemas import (
    AnyMessage,
    BusMessage,
    DecisionMade,
    Inbound,
    MediaArchived,
    Outcome,
    SendCommand,
    SendTyping,
    UserMessage,
    encode,
)

Kind = Literal["message", "event", "decision", "reply", "typing", "outcome", "media", "other"]
"""``message``/``event``: from the user; ``decision``: the router's; ``reply``/``typing``: a
command to the sender; ``outcome``: what became of a command; ``media``: an archived image."""

Who = Literal["user", "wxkf"]

FROM_USER: frozenset[Kind] = frozenset({"message", "event"})


class Record(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    """The message's own id: the key that makes a redelivery a no-op."""
    appid: str
    openid: str
    kind: Kind
    type: str
    """The schema's tag (``msg.text``, ``msg.other``, ``outbound.sent``…)."""
    routing_key: str
    time_ms: int
    correlation_id: str
    command_id: str | None = None
    """For an outcome: the command it reports on (the id of a ``reply`` record)."""
    body: str
    """The message as JSON, exactly as the shared schema encodes it."""


def kind_of(msg: BusMessage) -> Kind:
    # Subclasses before their bases: a user message is an Inbound too.
    if isinstance(msg, UserMessage):
        return "message"
    if isinstance(msg, Inbound):
        return "event"
    if isinstance(msg, DecisionMade):
        return "decision"
    if isinstance(msg, SendTyping):
        return "typing"
    if isinstance(msg, SendCommand):
        return "reply"
    if isinstance(msg, Outcome):
        return "outcome"
    if isinstance(msg, MediaArchived):
        return "media"
    return "other"


def who(kind: Kind) -> Who:
    return "user" if kind in FROM_USER else "wxkf"


def tag_of(msg: BusMessage) -> str:
    tag = msg.__struct_config__.tag
    return tag if isinstance(tag, str) else type(msg).__name__


def record_of(msg: AnyMessage) -> Record:
    return Record(
        id=msg.id,
        appid=msg.appid,
        openid=msg.openid,
        kind=kind_of(msg),
        type=tag_of(msg),
        routing_key=msg.routing_key(),
        time_ms=msg.time_ms,
        correlation_id=msg.correlation_id,
        command_id=msg.command_id if isinstance(msg, Outcome) else None,
        body=encode(msg).decode("utf-8"),
    )
