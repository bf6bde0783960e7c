"""Messages and events: typed from XML and JSON, written back as WeChat writes them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wechat_strategies import KINDS, kinds, messages
from wechat_vectors import E1_MSG, E2_MSG, PLAIN_BODY, TEXT_XML

from libs.common.wechat import codec, errors
from libs.common.wechat.codec import (
    EnterSessionEvent,
    ImageMessage,
    MiniProgramPageMessage,
    TextMessage,
    UnknownEvent,
    UnknownMessage,
)

BIG = 6054768590064713728  # beyond 2**53: a float would change it


def _json(**fields: Any) -> bytes:
    base: dict[str, Any] = {"ToUserName": "gh_1", "FromUserName": "o_1", "CreateTime": 1}
    return codec._json.encode(base | fields)


# --- reading WeChat's documents -----------------------------------------------------------------


def test_reads_the_documented_text_message() -> None:
    assert codec.parse(TEXT_XML) == TextMessage(
        to_user="toUser",
        from_user="fromUser",
        create_time=1482048670,
        content="this is a test",
        msg_id=1234567890123456,
    )


def test_reads_the_sample_librarys_message_with_its_64_bit_msgid() -> None:
    msg = codec.parse(E2_MSG, "xml")
    assert isinstance(msg, TextMessage)
    assert msg.msg_id == BIG
    assert msg.content == "abcdteT"


@pytest.mark.parametrize("msg_id", [str(BIG).encode(), b'"' + str(BIG).encode() + b'"'])
def test_json_msgid_as_number_or_string_is_exact(msg_id: bytes) -> None:
    body = _json(MsgType="text", Content="hi")[:-1] + b',"MsgId":' + msg_id + b"}"
    msg = codec.parse(body, "json")
    assert isinstance(msg, TextMessage)
    assert msg.msg_id == BIG


def test_json_createtime_as_a_string_is_read() -> None:
    msg = codec.parse(_json(MsgType="text", Content="x", MsgId=1, CreateTime="1610969440"))
    assert msg.create_time == 1610969440


def test_xml_numbers_may_be_padded_with_whitespace() -> None:
    doc = TEXT_XML.replace(b"<MsgId>1234567890123456", b"<MsgId>\n 1234567890123456 \n")
    msg = codec.parse(doc)
    assert isinstance(msg, TextMessage)
    assert msg.msg_id == 1234567890123456


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_reads_an_image(fmt: codec.Format) -> None:
    msg = ImageMessage(
        to_user="gh", from_user="o", create_time=5, pic_url="http://p/1", media_id="m", msg_id=7
    )
    assert codec.parse(codec.render(msg, fmt)) == msg


def test_reads_the_documented_miniprogrampage_with_empty_thumbs() -> None:
    body = _json(
        MsgType="miniprogrampage",
        MsgId=8,
        Title="title",
        AppId="wxother",
        PagePath="pages/index/index",
        ThumbUrl="",
        ThumbMediaId="",
    )
    assert codec.parse(body) == MiniProgramPageMessage(
        to_user="gh_1",
        from_user="o_1",
        create_time=1,
        msg_id=8,
        title="title",
        app_id="wxother",
        page_path="pages/index/index",
    )


def test_reads_the_enter_session_event() -> None:
    body = (
        b"<xml><ToUserName><![CDATA[gh]]></ToUserName><FromUserName><![CDATA[o]]></FromUserName>"
        b"<CreateTime>9</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        b"<Event><![CDATA[user_enter_tempsession]]></Event>"
        b"<SessionFrom><![CDATA[order-42]]></SessionFrom></xml>"
    )
    assert codec.parse(body) == EnterSessionEvent(
        to_user="gh", from_user="o", create_time=9, session_from="order-42"
    )


def test_an_unknown_event_keeps_its_fields() -> None:
    for body in (PLAIN_BODY, E1_MSG):
        msg = codec.parse(body)
        assert isinstance(msg, UnknownEvent)
        assert msg.event == "debug_demo"
        assert msg.fields == {"debug_str": "hello world"}
        assert msg.from_user == "o9AgO5Kd5ggOC-bXrbNODIiE3bGY"


def test_an_unknown_message_keeps_its_fields_and_msgid() -> None:
    msg = codec.parse(_json(MsgType="voice", MediaId="m", Format="amr", MsgId=str(BIG)))
    assert isinstance(msg, UnknownMessage)
    assert msg.msg_type == "voice"
    assert msg.fields == {"MediaId": "m", "Format": "amr", "MsgId": str(BIG)}
    assert msg.msg_id == BIG


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (7, 7),
        ("7", 7),
        (" 7 ", 7),
        ("49d72d67_1555684067", None),
        (1.5, None),
        (True, None),
        (-1, None),
        (2**64, None),
        (None, None),
    ],
)
def test_an_unknown_messages_msgid_is_read_only_when_it_is_an_integer(
    raw: Any, expected: int | None
) -> None:
    fields = {} if raw is None else {"MsgId": raw}
    msg = UnknownMessage(to_user="g", from_user="o", create_time=1, msg_type="x", fields=fields)
    assert msg.msg_id == expected


def test_subscribe_events_keep_their_list_as_object_or_array() -> None:
    xml_body = (
        b"<xml><ToUserName><![CDATA[gh]]></ToUserName><FromUserName><![CDATA[o]]></FromUserName>"
        b"<CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        b"<Event><![CDATA[subscribe_msg_popup_event]]></Event>"
        b"<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[t1]]></TemplateId>"
        b"<SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString></List>"
        b"<List><TemplateId><![CDATA[t2]]></TemplateId>"
        b"<SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString></List>"
        b"</SubscribeMsgPopupEvent></xml>"
    )
    msg = codec.parse(xml_body)
    assert isinstance(msg, UnknownEvent)
    assert msg.fields["SubscribeMsgPopupEvent"]["List"][1] == {
        "TemplateId": "t2",
        "SubscribeStatusString": "reject",
    }
    single = codec.parse(
        _json(MsgType="event", Event="subscribe_msg_popup_event", List={"TemplateId": "t1"})
    )
    assert isinstance(single, UnknownEvent)
    assert single.fields == {"List": {"TemplateId": "t1"}}


def test_known_types_ignore_fields_they_do_not_use() -> None:
    msg = codec.parse(_json(MsgType="text", Content="x", MsgId=1, Encrypt="abc", Extra=[1]))
    assert msg == TextMessage(to_user="gh_1", from_user="o_1", create_time=1, content="x", msg_id=1)


# --- refusals, each with its code ---------------------------------------------------------------

REFUSED = [
    pytest.param(_json(MsgType="text", Content="x", MsgId=1.5), "bad_field", id="msgid-float"),
    pytest.param(_json(MsgType="text", Content="x", MsgId=1.0), "bad_field", id="msgid-float-int"),
    pytest.param(
        _json(MsgType="text", Content="x", MsgId=f"{BIG}.0"), "bad_field", id="msgid-decimal-str"
    ),
    pytest.param(_json(MsgType="text", Content="x", MsgId="1e3"), "bad_field", id="msgid-exp-str"),
    pytest.param(_json(MsgType="text", Content="x", MsgId=True), "bad_field", id="msgid-bool"),
    pytest.param(_json(MsgType="text", Content="x", MsgId=-1), "bad_field", id="msgid-negative"),
    pytest.param(_json(MsgType="text", Content="x", MsgId=2**64), "bad_field", id="msgid-65-bits"),
    pytest.param(
        _json(MsgType="text", Content="x", MsgId=str(2**64)), "bad_field", id="msgid-65-bits-str"
    ),
    pytest.param(_json(MsgType="text", Content="x", MsgId=""), "bad_field", id="msgid-empty"),
    pytest.param(_json(MsgType="text", Content="x", MsgId=None), "bad_field", id="msgid-null"),
    pytest.param(
        _json(MsgType="text", Content="x", MsgId=1, CreateTime="abc"), "bad_field", id="time-abc"
    ),
    pytest.param(
        _json(MsgType="text", Content="x", MsgId=1, CreateTime="+1"), "bad_field", id="time-plus"
    ),
    pytest.param(
        _json(MsgType="text", Content="x", MsgId=1, CreateTime="١٢"), "bad_field", id="time-arabic"
    ),
    pytest.param(
        _json(MsgType="text", Content="x", MsgId=1, CreateTime=1.5), "bad_field", id="time-float"
    ),
    pytest.param(
        _json(MsgType="voice", CreateTime="1.0"), "bad_field", id="unknown-type-time-decimal"
    ),
    pytest.param(_json(MsgType="voice", CreateTime=-3), "bad_field", id="unknown-type-time-neg"),
    pytest.param(_json(MsgType="text", Content={"a": 1}, MsgId=1), "bad_field", id="content-obj"),
    pytest.param(_json(MsgType="text", Content=5, MsgId=1), "bad_field", id="content-number"),
    pytest.param(_json(MsgType=7), "bad_field", id="msgtype-number"),
    pytest.param(_json(MsgType=None), "bad_field", id="msgtype-null"),
    pytest.param(_json(MsgType="voice", CreateTime=None), "bad_field", id="unknown-time-null"),
    pytest.param(_json(MsgType="event", Event=["x"]), "bad_field", id="event-array"),
    pytest.param(_json(MsgType="voice", ToUserName=1), "bad_field", id="unknown-touser-number"),
    pytest.param(_json(MsgType="text", MsgId=1), "missing_field", id="text-without-content"),
    pytest.param(_json(MsgType="text", Content="x"), "missing_field", id="text-without-msgid"),
    pytest.param(_json(MsgType="image", MsgId=1), "missing_field", id="image-without-mediaid"),
    pytest.param(_json(MsgType="miniprogrampage"), "missing_field", id="page-without-msgid"),
    pytest.param(_json(Content="x", MsgId=1), "missing_field", id="without-msgtype"),
    pytest.param(_json(MsgType="event"), "missing_field", id="event-without-event"),
    pytest.param(
        b'{"ToUserName":"g","CreateTime":1,"MsgType":"voice"}',
        "missing_field",
        id="unknown-without-fromuser",
    ),
    pytest.param(
        b'{"ToUserName":"g","FromUserName":"o","MsgType":"event","Event":"x"}',
        "missing_field",
        id="unknown-event-without-createtime",
    ),
    pytest.param(
        TEXT_XML.replace(b"<Content><![CDATA[this is a test]]></Content>", b""),
        "missing_field",
        id="xml-text-without-content",
    ),
    pytest.param(
        TEXT_XML.replace(b"<Content><![CDATA[this is a test]]>", b"<Content><b>x</b>"),
        "bad_field",
        id="xml-content-nested",
    ),
    pytest.param(
        TEXT_XML.replace(b"1234567890123456", b"12345678901234567890123"),
        "bad_field",
        id="xml-msgid-too-big",
    ),
    pytest.param(
        TEXT_XML.replace(b"</Content>", b"</Content><Content>again</Content>"),
        "bad_field",
        id="xml-content-repeated",
    ),
    pytest.param(b"[1, 2]", "malformed_json", id="array-root"),
    pytest.param(b'{"a":1', "malformed_json", id="truncated-json"),
    pytest.param(b'{"a":NaN}', "malformed_json", id="nan"),
    pytest.param(b'{"a":1e400}', "malformed_json", id="huge-number"),
    pytest.param(b'{"a":1}{"b":2}', "malformed_json", id="two-documents"),
    pytest.param(b"[" * 50_000 + b"]" * 50_000, "malformed_json", id="deep-json"),
    pytest.param(b'{"a":"\xff"}', "bad_encoding", id="json-not-utf8"),
    pytest.param(TEXT_XML.replace(b"this is", b"th\xe9s is"), "bad_encoding", id="xml-not-utf8"),
    pytest.param(b"", "empty_body", id="empty"),
    pytest.param(b" \r\n\t", "empty_body", id="blank"),
    pytest.param(b"success", "unsupported_format", id="plain-text"),
    pytest.param(b"\xef\xbb\xbf{}", "unsupported_format", id="json-with-bom"),
    pytest.param(b"<xml>" + b"<a>" * 100 + b"</a>" * 100 + b"</xml>", "xml_too_deep", id="deep"),
]


@pytest.mark.parametrize(("body", "code"), REFUSED)
def test_bad_documents_are_refused_with_their_reason(body: bytes, code: str) -> None:
    with pytest.raises(errors.WeChatError) as caught:
        codec.parse(body)
    assert caught.value.code == code


def test_the_configured_format_must_match_the_body() -> None:
    with pytest.raises(errors.UnsupportedFormat) as caught:
        codec.parse(TEXT_XML, "json")
    assert caught.value.http_status == 415
    with pytest.raises(errors.UnsupportedFormat):
        codec.parse(PLAIN_BODY, "xml")
    assert codec.parse(PLAIN_BODY, "json") == codec.parse(PLAIN_BODY, "auto")


def test_sniffing_looks_past_leading_whitespace() -> None:
    assert codec.sniff(b" \r\n\t<xml/>") == "xml"
    assert codec.sniff(b"\n{}") == "json"


def test_size_is_capped_in_both_formats() -> None:
    with pytest.raises(errors.TooLarge):
        codec.parse(PLAIN_BODY, max_bytes=len(PLAIN_BODY) - 1)
    with pytest.raises(errors.TooLarge):
        codec.parse(TEXT_XML, max_bytes=len(TEXT_XML) - 1)


def test_errors_name_the_field_without_quoting_content() -> None:
    with pytest.raises(errors.BadField) as caught:
        codec.parse(_json(MsgType="text", Content="secret words", MsgId=1.5))
    assert "MsgId" in str(caught.value)
    assert "secret" not in str(caught.value)


# --- writing as WeChat does ---------------------------------------------------------------------


def test_renders_the_documented_text_message_byte_for_byte() -> None:
    msg = codec.parse(TEXT_XML)
    assert codec.render(msg, "xml") == TEXT_XML
    assert codec.render(msg, "json") == (
        b'{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,'
        b'"MsgType":"text","Content":"this is a test","MsgId":1234567890123456}'
    )


def test_renders_the_documented_plain_push_byte_for_byte() -> None:
    assert codec.render(codec.parse(PLAIN_BODY), "json") == PLAIN_BODY


def test_renders_fields_in_wechats_documented_order() -> None:
    page = MiniProgramPageMessage(to_user="g", from_user="o", create_time=1, msg_id=2)
    assert [name for name, _ in codec.fields_of(page)] == [
        "ToUserName",
        "FromUserName",
        "CreateTime",
        "MsgType",
        "MsgId",
        "Title",
        "AppId",
        "PagePath",
        "ThumbUrl",
        "ThumbMediaId",
    ]
    event = EnterSessionEvent(to_user="g", from_user="o", create_time=1)
    assert [name for name, _ in codec.fields_of(event)] == [
        "ToUserName",
        "FromUserName",
        "CreateTime",
        "MsgType",
        "Event",
        "SessionFrom",
    ]
    image = ImageMessage(to_user="g", from_user="o", create_time=1, media_id="m", msg_id=2)
    assert [name for name, _ in codec.fields_of(image)][4:] == ["PicUrl", "MediaId", "MsgId"]


def test_json_is_raw_utf8_and_exact_for_big_ids() -> None:
    msg = TextMessage(
        to_user="g", from_user="o", create_time=1, content="你好 👋", msg_id=2**64 - 1
    )
    body = codec.render(msg, "json")
    assert "你好 👋".encode() in body
    assert b"\\u" not in body
    assert b'"MsgId":18446744073709551615' in body


def test_xml_cannot_carry_control_characters() -> None:
    msg = TextMessage(to_user="g", from_user="o", create_time=1, content="a\x00b", msg_id=1)
    with pytest.raises(errors.Unrepresentable):
        codec.render(msg, "xml")
    assert codec.parse(codec.render(msg, "json")) == msg


@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.parametrize("kind", KINDS)
@settings(deadline=None, max_examples=50)
@given(data=st.data())
def test_render_then_parse_gives_back_the_message(
    kind: str, fmt: codec.Format, data: st.DataObject
) -> None:
    msg = data.draw(kinds()[kind])
    assert codec.parse(codec.render(msg, fmt), fmt) == msg


@given(messages(st.text(max_size=60)))
@settings(deadline=None)
def test_json_carries_any_text(msg: codec.Message) -> None:
    assert codec.parse(codec.render(msg, "json")) == msg
