"""Bus messages: round trips, routing keys, exact 64-bit MsgIds, and the exported JSON Schema.

The schema is checked by a small validator below that covers exactly the keywords msgspec
emits (type, enum, properties, required, anyOf, $ref, items, additionalProperties); it is
itself tested on messages it must refuse.
"""

from __future__ import annotations

import json
import typing
import uuid
from typing import Any

import msgspec
import pytest

from libs.common import schemas
from libs.common.schemas import (
    AnyMessage,
    BusMessage,
    DecisionMade,
    DecisionReply,
    Failed,
    ImageReceived,
    MediaArchived,
    MiniProgramPageReceived,
    OtherEventReceived,
    OtherMessageReceived,
    Rejected,
    SendImage,
    SendLink,
    SendMiniProgramPage,
    SendText,
    SendTyping,
    Sent,
    SessionEntered,
    TextReceived,
    decode,
    decode_reply,
    derived_id,
    encode,
    json_schema,
    routing_key,
    routing_word,
)

ENVELOPE: dict[str, Any] = {
    "appid": "wx0123456789abcdef",
    "openid": "oUser",
    "correlation_id": "c1",
}
INBOUND: dict[str, Any] = {**ENVELOPE, "to_user": "gh_abc", "create_time": 1_750_000_000}
BIG_MSG_ID = 2**63 - 1

SAMPLES: dict[type[BusMessage], BusMessage] = {
    TextReceived: TextReceived(**INBOUND, msg_id=BIG_MSG_ID, content="你好"),
    ImageReceived: ImageReceived(**INBOUND, msg_id=2**53 + 1, pic_url="http://p", media_id="m"),
    MiniProgramPageReceived: MiniProgramPageReceived(
        **INBOUND, msg_id=1, title="t", page_appid="wx1", page_path="pages/a", thumb_media_id="m"
    ),
    OtherMessageReceived: OtherMessageReceived(
        **INBOUND, msg_id=2, msg_type="video", fields={"MediaId": "x", "n": 1}
    ),
    SessionEntered: SessionEntered(**INBOUND, session_from="card"),
    OtherEventReceived: OtherEventReceived(**INBOUND, event="kf_close_session", fields={"a": "b"}),
    DecisionMade: DecisionMade(
        **ENVELOPE, event_id="e1", rule="vip", action="transfer", actions=["transfer", "tag"]
    ),
    Sent: Sent(**ENVELOPE, command_id="k1", msgtype="text", latency_ms=12.5),
    Rejected: Rejected(**ENVELOPE, command_id="k2", msgtype="text", reason="quota_exhausted"),
    Failed: Failed(**ENVELOPE, command_id="k3", msgtype="image", errcode=40003, errmsg="x"),
    MediaArchived: MediaArchived(
        **ENVELOPE,
        event_id="e2",
        media_id="m",
        path="a/b.jpg",
        sha256="0" * 64,
        size=3,
        content_type="image/jpeg",
    ),
    SendText: SendText(**ENVELOPE, content="hi", cause_id="e1", seq=1, total=2),
    SendImage: SendImage(**ENVELOPE, asset="welcome"),
    SendLink: SendLink(**ENVELOPE, title="t", url="https://example.invalid/x"),
    SendMiniProgramPage: SendMiniProgramPage(**ENVELOPE, title="t", pagepath="pages/i"),
    SendTyping: SendTyping(**ENVELOPE, command="CancelTyping"),
}

EXPECTED_KEYS = {
    TextReceived: "msg.text",
    ImageReceived: "msg.image",
    MiniProgramPageReceived: "msg.miniprogrampage",
    OtherMessageReceived: "msg.video",
    SessionEntered: "event.user_enter_tempsession",
    OtherEventReceived: "event.kf_close_session",
    DecisionMade: "decision.transfer",
    Sent: "outbound.sent.text",
    Rejected: "outbound.rejected.quota_exhausted",
    Failed: "outbound.failed.image",
    MediaArchived: "media.archived",
    SendText: "send.text",
    SendImage: "send.image",
    SendLink: "send.link",
    SendMiniProgramPage: "send.miniprogrampage",
    SendTyping: "send.typing",
}


def concrete_types() -> list[type[BusMessage]]:
    def flatten(tp: Any) -> list[Any]:
        args = typing.get_args(tp)
        return [t for a in args for t in flatten(a)] if args else [tp]

    return flatten(AnyMessage)


def test_the_samples_cover_every_message_type() -> None:
    assert set(concrete_types()) == set(SAMPLES) == set(EXPECTED_KEYS)


@pytest.mark.parametrize("msg", SAMPLES.values(), ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: BusMessage) -> None:
    body = encode(msg)
    assert decode(body) == msg
    assert type(decode(body)) is type(msg)
    assert json.loads(body)["type"] == type(msg).__struct_config__.tag


@pytest.mark.parametrize("cls", EXPECTED_KEYS, ids=lambda c: c.__name__)
def test_routing_keys(cls: type[BusMessage]) -> None:
    assert routing_key(SAMPLES[cls]) == EXPECTED_KEYS[cls]


def test_send_commands_know_their_msgtype() -> None:
    assert SAMPLES[SendMiniProgramPage].msgtype == "miniprogrampage"  # type: ignore[attr-defined]
    assert SAMPLES[SendTyping].msgtype == "typing"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("video", "video"),
        ("a.b", "a_b"),
        ("*", "_"),
        ("#.x", "_x"),
        ("视频", "_"),
        ("", "unknown"),
        ("k" * 100, "k" * 64),
        ("with space", "with_space"),
    ],
)
def test_unknown_types_are_sanitised_into_one_routing_word(raw: str, word: str) -> None:
    assert routing_word(raw) == word
    other = OtherMessageReceived(**INBOUND, msg_id=1, msg_type=raw)
    key = routing_key(other)
    assert key == "msg." + word
    assert key.count(".") == 1
    assert "*" not in key
    assert "#" not in key
    assert routing_key(OtherEventReceived(**INBOUND, event=raw)) == "event." + word


@pytest.mark.parametrize("msg_id", [2**53 + 1, 2**63 - 1, 2**64 - 1])
def test_msg_ids_beyond_float_precision_survive_exactly(msg_id: int) -> None:
    msg = TextReceived(**INBOUND, msg_id=msg_id, content="x")
    body = encode(msg)
    assert f'"msg_id":{msg_id}'.encode() in body
    decoded = decode(body)
    assert isinstance(decoded, TextReceived)
    assert decoded.msg_id == msg_id
    assert float(msg_id) != msg_id or msg_id < 2**53  # the value is beyond what a float holds


def test_ids_and_times_have_defaults_and_derived_ids_are_stable() -> None:
    a = SendText(**ENVELOPE, content="x")
    b = SendText(**ENVELOPE, content="x")
    assert a.id != b.id
    assert len(a.id) == 32
    assert a.time_ms > 1_600_000_000_000
    assert a.v == schemas.SCHEMA_VERSION
    assert derived_id("push", "123") == derived_id("push", "123")
    assert derived_id("push", "123") != derived_id("push", "1", "23")


@pytest.mark.parametrize("parts", [("push", "123"), ("decision", "d" * 32, "0"), ("微信", "")])
def test_derived_ids_are_the_uuid5_of_their_parts(parts: tuple[str, ...]) -> None:
    # Ids already in ledgers and dedupe marks were made this way: they must not change.
    expected = uuid.uuid5(uuid.UUID("6f1d3a52-8c1e-4f1e-9a55-7b0c1f3e2d10"), "\x1f".join(parts))
    assert derived_id(*parts) == expected.hex


def test_new_ids_are_random_version_4_uuids() -> None:
    ids = {schemas.new_id() for _ in range(200)}
    assert len(ids) == 200
    for one in ids:
        parsed = uuid.UUID(hex=one)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == one


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", msgspec.DecodeError),
        (b'{"type":"msg.nope","appid":"a"}', msgspec.ValidationError),
        (b'{"appid":"a"}', msgspec.ValidationError),
        (
            b'{"type":"send.text","appid":"a","openid":"o","correlation_id":"c"}',
            msgspec.ValidationError,
        ),
        (
            b'{"type":"msg.text","appid":"a","openid":"o","correlation_id":"c","to_user":"g",'
            b'"create_time":1,"msg_id":"12","content":"x"}',
            msgspec.ValidationError,
        ),
    ],
    ids=["not-json", "unknown-type", "no-type", "missing-field", "msg-id-as-string"],
)
def test_malformed_bodies_raise_typed_errors(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode(body)


def test_decision_reply_round_trips() -> None:
    reply = DecisionReply(event_id="e", transfer=True, rule="vip")
    assert decode_reply(encode(reply)) == reply
    with pytest.raises(msgspec.ValidationError):
        decode_reply(b'{"event_id":"e"}')


# -- the JSON Schema ------------------------------------------------------------------------------


class Invalid(Exception):
    pass


_JSON_TYPES: dict[str, Any] = {
    "object": dict,
    "string": str,
    "integer": int,
    "number": int | float,
    "boolean": bool,
    "array": list,
    "null": type(None),
}


def is_json_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False  # JSON's true is not a number, although Python's True is an int
    return isinstance(value, _JSON_TYPES[name])


def validate(instance: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "$") -> None:
    """Validate against the subset of JSON Schema that msgspec emits; raise Invalid."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        validate(instance, root["$defs"][name], root, at)
        return
    for key in ("anyOf", "oneOf"):
        if key in schema:
            passed = 0
            for option in schema[key]:
                try:
                    validate(instance, option, root, at)
                    passed += 1
                except Invalid:
                    pass
            if passed == 0 or (key == "oneOf" and passed > 1):
                raise Invalid(f"{at}: matches {passed} of the {key} options")
    if "enum" in schema and instance not in schema["enum"]:
        raise Invalid(f"{at}: {instance!r} not in {schema['enum']}")
    if "type" in schema:
        allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(is_json_type(instance, t) for t in allowed):
            raise Invalid(f"{at}: {instance!r} is not {allowed}")
    if isinstance(instance, dict):
        for name in schema.get("required", []):
            if name not in instance:
                raise Invalid(f"{at}: missing {name}")
        props = schema.get("properties", {})
        for name, value in instance.items():
            if name in props:
                validate(value, props[name], root, f"{at}.{name}")
            elif schema.get("additionalProperties") is False or (
                props and "additionalProperties" not in schema and schema.get("title")
            ):
                # msgspec Structs ignore unknown fields on decode, but we emit none: flag them.
                raise Invalid(f"{at}: unexpected field {name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                validate(value, schema["additionalProperties"], root, f"{at}.{name}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            validate(item, schema["items"], root, f"{at}[{i}]")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json_schema()


def test_the_schema_is_json_and_declares_its_dialect(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(json.dumps(schema)) == schema


def test_every_tag_is_in_the_schema_and_every_ref_resolves(schema: dict[str, Any]) -> None:
    mapping = schema["$defs"]["AnyMessage"]["discriminator"]["mapping"]
    for cls in concrete_types():
        tag = cls.__struct_config__.tag
        assert mapping[tag] == f"#/$defs/{cls.__name__}"
        assert schema["$defs"][cls.__name__]["properties"]["type"] == {"enum": [tag]}
    refs = [m for m in json.dumps(schema).split('"') if m.startswith("#/$defs/")]
    assert refs
    for ref in refs:
        assert ref.removeprefix("#/$defs/") in schema["$defs"]


def test_required_fields_match_the_structs(schema: dict[str, Any]) -> None:
    for cls in [*concrete_types(), DecisionReply]:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        required = {f.encode_name for f in info.fields if f.required}
        if cls is not DecisionReply:
            required.add("type")
        assert set(schema["$defs"][cls.__name__].get("required", [])) == required, cls


@pytest.mark.parametrize("msg", SAMPLES.values(), ids=lambda m: type(m).__name__)
def test_real_encoded_messages_validate(schema: dict[str, Any], msg: BusMessage) -> None:
    validate(json.loads(encode(msg)), schema, schema)


def test_the_decision_reply_validates(schema: dict[str, Any]) -> None:
    reply = json.loads(encode(DecisionReply(event_id="e", transfer=False, rule="r")))
    validate(reply, schema, schema)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("content"),
        lambda d: d.update(msg_id="123"),
        lambda d: d.update(type="msg.unknown"),
        lambda d: d.update(create_time=1.5),
        lambda d: d.update(surprise=True),
    ],
    ids=["missing-required", "wrong-type", "unknown-tag", "float-for-int", "extra-field"],
)
def test_the_validator_refuses_broken_messages(schema: dict[str, Any], mutate) -> None:
    body = json.loads(encode(SAMPLES[TextReceived]))
    mutate(body)
    with pytest.raises(Invalid):
        validate(body, schema, schema)
