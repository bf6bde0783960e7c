"""Every message that crosses the bus, as tagged msgspec Structs.

The tag (JSON field ``type``) is the routing key, or its stem where the key carries a variable
part (``decision.<action>``, ``outbound.sent.<msgtype>``, ``msg.<unknown type>``);
:func:`routing_key` is the one place that turns a message into its key. Decoding any body
with :data:`decode` picks the Struct from ``type``. ``wxkf schema`` prints
:func:`json_schema` for extension authors in other languages.

Compatibility rule: new fields get defaults; a breaking change bumps :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Literal, TypeAlias

import msgspec

SCHEMA_VERSION = 1

# A namespace for ids derived from a natural key (a push's dedupe key, a decision and its
# position), so that a redelivery or a retried push carries the same id everywhere.
_ID_NAMESPACE = uuid.UUID("6f1d3a52-8c1e-4f1e-9a55-7b0c1f3e2d10")


def new_id() -> str:
    """A random id: the 32 hex digits of a version-4 UUID."""
    return uuid.uuid4().hex


def derived_id(*parts: str) -> str:
    """A stable id for a natural key: the same parts give the same id in every process (the
    32 hex digits of the version-5 UUID of the parts joined by US, in :data:`_ID_NAMESPACE`)."""
    return uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)).hex


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class BusMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The envelope every bus message carries."""

    v: int = SCHEMA_VERSION
    id: str = msgspec.field(default_factory=new_id)
    """Unique per fact or command; consumers deduplicate on it."""
    appid: str
    openid: str
    """The user this message is about (WeChat's FromUserName of the push)."""
    time_ms: int = msgspec.field(default_factory=now_ms)
    correlation_id: str
    """Follows one conversation turn through every service and log line."""

    def routing_key(self) -> str:
        tag = self.__struct_config__.tag
        assert isinstance(tag, str)
        return tag


# --- inbound: what ingress publishes for each push (kf.events) ------------------------------


class Inbound(BusMessage, frozen=True, kw_only=True):
    to_user: str
    """The mini program's original id (``gh_…``): WeChat's ToUserName."""
    create_time: int
    """WeChat's CreateTime, unix seconds."""


class UserMessage(Inbound, frozen=True, kw_only=True):
    """Something the user said. Only these can be transferred to a human agent."""

    msg_id: int
    """WeChat's MsgId: a 64-bit integer, beyond what a float holds exactly."""


class TextReceived(UserMessage, frozen=True, kw_only=True, tag="msg.text"):
    content: str


class ImageReceived(UserMessage, frozen=True, kw_only=True, tag="msg.image"):
    pic_url: str = ""
    media_id: str


class MiniProgramPageReceived(UserMessage, frozen=True, kw_only=True, tag="msg.miniprogrampage"):
    title: str = ""
    page_appid: str = ""
    """The AppId field of the card: which mini program it points at."""
    page_path: str = ""
    thumb_url: str = ""
    thumb_media_id: str = ""


class OtherMessageReceived(UserMessage, frozen=True, kw_only=True, tag="msg.other"):
    """A MsgType this version does not know; published under ``msg.<its type>``."""

    msg_type: str
    fields: dict[str, Any] = {}

    def routing_key(self) -> str:
        return "msg." + routing_word(self.msg_type)


class SessionEntered(Inbound, frozen=True, kw_only=True, tag="event.user_enter_tempsession"):
    """The user opened the customer service chat (``user_enter_tempsession``)."""

    session_from: str = ""


class OtherEventReceived(Inbound, frozen=True, kw_only=True, tag="event.other"):
    """An Event this version does not know; published under ``event.<its name>``."""

    event: str
    fields: dict[str, Any] = {}

    def routing_key(self) -> str:
        return "event." + routing_word(self.event)


# --- the router's decision --------------------------------------------------------------------

DecisionAction = Literal["transfer", "reply", "typing", "extension", "tag", "ignore"]


class DecisionReply(msgspec.Struct, frozen=True, kw_only=True):
    """The RPC answer to ingress: transfer this user message or not."""

    event_id: str
    transfer: bool
    rule: str


class DecisionMade(BusMessage, frozen=True, kw_only=True, tag="decision"):
    """A fact: which rule matched an inbound event and what it did (``decision.<action>``)."""

    event_id: str
    rule: str
    action: DecisionAction
    """The leading action: transfer if any, else the first action of the rule."""
    actions: list[DecisionAction] = []
    transfer: bool = False
    late: bool = False
    """True when ingress had stopped waiting for the answer (its deadline had passed)."""
    latency_us: int = 0

    def routing_key(self) -> str:
        return "decision." + self.action


# --- commands to the sender (kf.commands) -----------------------------------------------------


class SendCommand(BusMessage, frozen=True, kw_only=True):
    cause_id: str = ""
    """The event (or decision) this command answers."""
    seq: int = 0
    """Position among the commands of one cause; the sender delivers them in this order."""
    total: int = 1
    opens: Literal["message", "enter"] | None = None
    """Set when the command answers an inbound event: the kind of reply window that event
    opens (a user message, or entering the chat), from ``opened_at``. The sender opens it
    itself if the event has not reached it yet on its own queue."""
    opened_at: int = 0
    """The answered event's CreateTime (unix seconds)."""

    @property
    def msgtype(self) -> str:
        return self.routing_key().removeprefix("send.")


class SendText(SendCommand, frozen=True, kw_only=True, tag="send.text"):
    content: str


class SendImage(SendCommand, frozen=True, kw_only=True, tag="send.image"):
    """An image by WeChat ``media_id`` or by the name of an asset the media service keeps."""

    media_id: str | None = None
    asset: str | None = None


class SendLink(SendCommand, frozen=True, kw_only=True, tag="send.link"):
    title: str
    description: str = ""
    url: str
    thumb_url: str = ""


class SendMiniProgramPage(SendCommand, frozen=True, kw_only=True, tag="send.miniprogrampage"):
    title: str
    pagepath: str
    thumb_media_id: str | None = None
    thumb_asset: str | None = None


class SendTyping(SendCommand, frozen=True, kw_only=True, tag="send.typing"):
    command: Literal["Typing", "CancelTyping"] = "Typing"


# --- outcomes of commands (kf.events) ---------------------------------------------------------

RejectReason = Literal["no_window", "window_expired", "quota_exhausted", "typing_not_allowed"]


class Outcome(BusMessage, frozen=True, kw_only=True):
    command_id: str
    cause_id: str = ""
    msgtype: str
    attempts: int = 1


class Sent(Outcome, frozen=True, kw_only=True, tag="outbound.sent"):
    latency_ms: float = 0.0
    """How long WeChat took to answer the successful call."""

    def routing_key(self) -> str:
        return "outbound.sent." + self.msgtype


class Rejected(Outcome, frozen=True, kw_only=True, tag="outbound.rejected"):
    """Not sent because WeChat's quota would refuse it (or did: then ``errcode`` is set)."""

    reason: RejectReason
    errcode: int | None = None

    def routing_key(self) -> str:
        return "outbound.rejected." + self.reason


class Failed(Outcome, frozen=True, kw_only=True, tag="outbound.failed"):
    errcode: int | None = None
    """WeChat's errcode; None when WeChat never answered (timeouts, HTTP errors)."""
    errmsg: str = ""

    def routing_key(self) -> str:
        return "outbound.failed." + self.msgtype


class MediaArchived(BusMessage, frozen=True, kw_only=True, tag="media.archived"):
    """A user's image, saved before WeChat's 3-day expiry."""

    event_id: str
    media_id: str
    path: str
    sha256: str
    size: int
    content_type: str


# --- unions and decoding ----------------------------------------------------------------------

InboundEvent: TypeAlias = (
    TextReceived
    | ImageReceived
    | MiniProgramPageReceived
    | OtherMessageReceived
    | SessionEntered
    | OtherEventReceived
)
Command: TypeAlias = SendText | SendImage | SendLink | SendMiniProgramPage | SendTyping
Fact: TypeAlias = InboundEvent | DecisionMade | Sent | Rejected | Failed | MediaArchived
AnyMessage: TypeAlias = Fact | Command

USER_MESSAGE_TYPES: tuple[type[UserMessage], ...] = (
    TextReceived,
    ImageReceived,
    MiniProgramPageReceived,
    OtherMessageReceived,
)

_decoder: msgspec.json.Decoder[AnyMessage] = msgspec.json.Decoder(AnyMessage)
_encoder = msgspec.json.Encoder()
_reply_decoder = msgspec.json.Decoder(DecisionReply)


def decode(body: bytes) -> AnyMessage:
    """Decode any bus body; raises ``msgspec.ValidationError``/``DecodeError`` when malformed."""
    return _decoder.decode(body)


def encode(msg: msgspec.Struct) -> bytes:
    return _encoder.encode(msg)


def decode_reply(body: bytes) -> DecisionReply:
    return _reply_decoder.decode(body)


def routing_key(msg: BusMessage) -> str:
    return msg.routing_key()


_NOT_A_WORD = re.compile(r"[^A-Za-z0-9_\-]+")


def routing_word(raw: str) -> str:
    """One AMQP routing-key word from text WeChat controls: no dots, no wildcards, bounded."""
    word = _NOT_A_WORD.sub("_", raw)[:64]
    return word or "unknown"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every bus message and the RPC answer, for extension authors."""
    (schemas, components) = msgspec.json.schema_components(
        [AnyMessage, DecisionReply], ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"wxkf bus messages, schema version {SCHEMA_VERSION}",
        "description": (
            "Bodies on the kf.events and kf.commands exchanges; the 'type' field selects the "
            "message. DecisionReply is the body of the decision RPC's answer."
        ),
        "oneOf": [{"$ref": "#/$defs/AnyMessage"}, schemas[1]],
        "$defs": {"AnyMessage": schemas[0], **components},
    }
