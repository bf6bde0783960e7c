"""WeChat's inbound messages and events as typed Structs, from and to XML or JSON.

:func:`parse` reads a push's message (the body itself in plain mode, the decrypted text in the
encrypted modes); :func:`render` writes one exactly as WeChat does, field for field and in
WeChat's order, which is how the simulator builds its pushes.

``CreateTime`` and ``MsgId`` are integers (``MsgId`` beyond what a float holds exactly); JSON
may carry either as a string of digits, so both forms are read, and neither ever goes through
a float. A message type or event this version does not know is kept whole, not refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

import msgspec

from libs.common.wechat import xml
from libs.common.wechat.errors import (
    BadEncoding,
    BadField,
    EmptyBody,
    MalformedJson,
    MissingField,
    TooLarge,
    UnsupportedFormat,
)

Format: TypeAlias = Literal["xml", "json"]
FormatChoice: TypeAlias = Literal["xml", "json", "auto"]

# msgspec bounds stop at int64; the top of MsgId's unsigned 64-bit range is checked by hand.
CreateTime = Annotated[int, msgspec.Meta(ge=0)]
MsgId = Annotated[int, msgspec.Meta(ge=0)]
_MAX_INT = 2**64 - 1

MAX_BYTES = xml.MAX_BYTES

_NAMES = {
    "to_user": "ToUserName",
    "from_user": "FromUserName",
    "create_time": "CreateTime",
    "msg_type": "MsgType",
    "msg_id": "MsgId",
    "content": "Content",
    "pic_url": "PicUrl",
    "media_id": "MediaId",
    "title": "Title",
    "app_id": "AppId",
    "page_path": "PagePath",
    "thumb_url": "ThumbUrl",
    "thumb_media_id": "ThumbMediaId",
    "event": "Event",
    "session_from": "SessionFrom",
}


class _Common(msgspec.Struct, frozen=True, kw_only=True, rename=_NAMES):
    """The fields every message and event carries, in WeChat's order."""

    to_user: str
    """The mini program's original id (``gh_…``)."""
    from_user: str
    """The user's openid."""
    create_time: CreateTime
    """Unix seconds."""
    msg_type: str


class TextMessage(_Common, frozen=True, kw_only=True):
    msg_type: Literal["text"] = "text"
    content: str
    msg_id: MsgId


class ImageMessage(_Common, frozen=True, kw_only=True):
    msg_type: Literal["image"] = "image"
    pic_url: str = ""
    media_id: str
    msg_id: MsgId


class MiniProgramPageMessage(_Common, frozen=True, kw_only=True):
    msg_type: Literal["miniprogrampage"] = "miniprogrampage"
    msg_id: MsgId
    title: str = ""
    app_id: str = ""
    """The mini program the card opens."""
    page_path: str = ""
    thumb_url: str = ""
    thumb_media_id: str = ""


class EnterSessionEvent(_Common, frozen=True, kw_only=True):
    """``user_enter_tempsession``: the user opened the customer service chat."""

    msg_type: Literal["event"] = "event"
    event: Literal["user_enter_tempsession"] = "user_enter_tempsession"
    session_from: str = ""
    """The ``session-from`` of the button the user tapped."""


class UnknownMessage(_Common, frozen=True, kw_only=True):
    """A MsgType this version does not know; every other field kept as received, in order."""

    fields: dict[str, Any] = {}

    @property
    def msg_id(self) -> int | None:
        """``MsgId`` when the message has one that is an integer."""
        return _optional_integer(self.fields.get("MsgId"))


class UnknownEvent(_Common, frozen=True, kw_only=True):
    """An Event this version does not know; every other field kept as received, in order."""

    msg_type: Literal["event"] = "event"
    event: str
    fields: dict[str, Any] = {}


Message: TypeAlias = (
    TextMessage
    | ImageMessage
    | MiniProgramPageMessage
    | EnterSessionEvent
    | UnknownMessage
    | UnknownEvent
)

_MESSAGES: dict[str, type[Message]] = {
    "text": TextMessage,
    "image": ImageMessage,
    "miniprogrampage": MiniProgramPageMessage,
}
_EVENTS: dict[str, type[Message]] = {"user_enter_tempsession": EnterSessionEvent}
_COMMON = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
_INTEGERS = ("CreateTime", "MsgId")


# --- reading ------------------------------------------------------------------------------------


def sniff(body: bytes) -> Format:
    """The format of ``body`` from its first non-blank byte."""
    first = body.lstrip(b" \t\r\n")[:1]
    if first == b"<":
        return "xml"
    if first in (b"{", b"["):  # an array is JSON too, refused later with a clearer reason
        return "json"
    if not first:
        raise EmptyBody("the body is empty")
    raise UnsupportedFormat("the body starts with neither '<' (XML) nor '{' (JSON)")


def detect(body: bytes, fmt: FormatChoice) -> Format:
    """The format of ``body``, which must be ``fmt`` unless that is ``auto``."""
    found = sniff(body)
    if fmt != "auto" and found != fmt:
        raise UnsupportedFormat(f"the body is {found} but the format configured is {fmt}")
    return found


def document(body: bytes, fmt: Format, *, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """The top-level fields of an XML or JSON document (no message typing yet)."""
    if fmt == "xml":
        return xml.parse(body, max_bytes=max_bytes)
    if len(body) > max_bytes:
        raise TooLarge(f"{len(body)} bytes is more than the {max_bytes} allowed")
    try:
        doc = msgspec.json.decode(body)
    except UnicodeDecodeError as exc:
        raise BadEncoding(f"not UTF-8 at byte {exc.start}") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # msgspec 0.23 reports bytes that are not UTF-8 as a DecodeError, earlier releases as a
        # UnicodeDecodeError: look at the bytes only once the document was refused.
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise BadEncoding(f"not UTF-8 at byte {bad.start}") from None
        # ValidationError: a number beyond what JSON numbers can hold here (e.g. 1e400).
        raise MalformedJson(str(exc)) from None
    except RecursionError:
        raise MalformedJson("the document nests too deep") from None
    if not isinstance(doc, dict):
        raise MalformedJson(f"the root is {_json_kind(doc)}, not an object")
    return doc


def parse(body: bytes, fmt: FormatChoice = "auto", *, max_bytes: int = MAX_BYTES) -> Message:
    """The message in ``body``; every problem is a :class:`WeChatError` with its code."""
    return from_document(document(body, detect(body, fmt), max_bytes=max_bytes))


def from_document(doc: dict[str, Any]) -> Message:
    """The typed message for a document's fields (``doc`` is consumed: integers are fixed)."""
    msg_type = _text(doc, "MsgType")
    if msg_type == "event":
        event = _text(doc, "Event")
        cls = _EVENTS.get(event)
        if cls is None:
            return UnknownEvent(**_common(doc), event=event, fields=_rest(doc, (*_COMMON, "Event")))
    else:
        cls = _MESSAGES.get(msg_type)
        if cls is None:
            return UnknownMessage(**_common(doc), msg_type=msg_type, fields=_rest(doc, _COMMON))
    for name in _INTEGERS:
        value = doc.get(name)
        if isinstance(value, str):
            doc[name] = _digits(name, value)
        elif isinstance(value, int) and value > _MAX_INT:
            raise BadField(f"{msg_type}: {name} is beyond 64 bits")
    try:
        return msgspec.convert(doc, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.startswith("Object missing required field"):
            raise MissingField(f"{msg_type}: {text}") from None
        raise BadField(f"{msg_type}: {text}") from None


def _common(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "to_user": _text(doc, "ToUserName"),
        "from_user": _text(doc, "FromUserName"),
        "create_time": _integer(doc, "CreateTime"),
    }


def _rest(doc: dict[str, Any], taken: tuple[str, ...]) -> dict[str, Any]:
    return {name: value for name, value in doc.items() if name not in taken}


def _text(doc: dict[str, Any], name: str) -> str:
    if name not in doc:
        raise MissingField(f"Object missing required field `{name}`")
    value = doc[name]
    if not isinstance(value, str):
        raise BadField(f"Expected `str`, got {_json_kind(value)} - at `$.{name}`")
    return value


def _integer(doc: dict[str, Any], name: str) -> int:
    if name not in doc:
        raise MissingField(f"Object missing required field `{name}`")
    value = doc[name]
    if isinstance(value, str):
        return _digits(name, value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_INT:
        return value
    raise BadField(f"Expected a non-negative 64-bit `int`, got {_json_kind(value)} - at `$.{name}`")


def _digits(name: str, value: str) -> int:
    number = _optional_integer(value)
    if number is None:
        raise BadField(
            f"Expected `int` or a string of at most 64 bits of digits, got {value[:24]!r} "
            f"- at `$.{name}`"
        )
    return number


def _optional_integer(value: Any) -> int | None:
    """An unsigned 64-bit integer from an int or a string of ASCII digits, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= _MAX_INT else None
    if isinstance(value, str):
        digits = value.strip(" \t\r\n")
        if 0 < len(digits) <= 20 and digits.isascii() and digits.isdigit():
            number = int(digits)
            return number if number <= _MAX_INT else None
    return None


_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    type(None): "null",
}


def _json_kind(value: Any) -> str:
    """How a decoded JSON value is named in an error."""
    return _KINDS.get(type(value), type(value).__name__)


# --- writing ------------------------------------------------------------------------------------

_json = msgspec.json.Encoder()


def fields_of(msg: Message) -> list[tuple[str, Any]]:
    """The wire fields of ``msg`` in WeChat's order."""
    if isinstance(msg, UnknownMessage | UnknownEvent):
        head: list[tuple[str, Any]] = [
            ("ToUserName", msg.to_user),
            ("FromUserName", msg.from_user),
            ("CreateTime", msg.create_time),
            ("MsgType", msg.msg_type),
        ]
        if isinstance(msg, UnknownEvent):
            head.append(("Event", msg.event))
        return [*head, *msg.fields.items()]
    return [
        (wire, getattr(msg, name))
        for wire, name in zip(msg.__struct_encode_fields__, msg.__struct_fields__, strict=True)
    ]


def render(msg: Message, fmt: Format) -> bytes:
    """``msg`` as WeChat writes it: XML with CDATA strings and bare numbers, or JSON."""
    if fmt == "xml":
        return xml.build(fields_of(msg))
    if isinstance(msg, UnknownMessage | UnknownEvent):
        return _json.encode(dict(fields_of(msg)))
    return _json.encode(msg)
