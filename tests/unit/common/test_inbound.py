"""Codec Structs → bus events: the right type and key, and ids that retries share."""

from __future__ import annotations

import pytest

from libs.common import schemas
from libs.common.inbound import event_id, to_event
from libs.common.wechat import codec

APPID = "wxba5fad812f8e6fb9"
BIG_MSG_ID = 6054768590064713728  # beyond 2**53: a float would change it


def _parse(doc: bytes) -> codec.Message:
    return codec.parse(doc)


TEXT_XML = (
    b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o_user]]>"
    b"</FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    b"<Content><![CDATA[hi]]></Content><MsgId>6054768590064713728</MsgId></xml>"
)


@pytest.mark.parametrize(
    ("doc", "cls", "key"),
    [
        (TEXT_XML, schemas.TextReceived, "msg.text"),
        (
            b'{"ToUserName":"gh_1","FromUserName":"o_user","CreateTime":1,"MsgType":"image",'
            b'"PicUrl":"http://p","MediaId":"m1","MsgId":7}',
            schemas.ImageReceived,
            "msg.image",
        ),
        (
            b'{"ToUserName":"gh_1","FromUserName":"o_user","CreateTime":1,'
            b'"MsgType":"miniprogrampage","MsgId":8,"Title":"t","AppId":"wxother",'
            b'"PagePath":"pages/a","ThumbUrl":"","ThumbMediaId":""}',
            schemas.MiniProgramPageReceived,
            "msg.miniprogrampage",
        ),
        (
            b'{"ToUserName":"gh_1","FromUserName":"o_user","CreateTime":1,"MsgType":"event",'
            b'"Event":"user_enter_tempsession","SessionFrom":"from-button"}',
            schemas.SessionEntered,
            "event.user_enter_tempsession",
        ),
        (
            b'{"ToUserName":"gh_1","FromUserName":"o_user","CreateTime":1,"MsgType":"voice",'
            b'"MediaId":"v","MsgId":9}',
            schemas.OtherMessageReceived,
            "msg.voice",
        ),
        (
            b'{"ToUserName":"gh_1","FromUserName":"o_user","CreateTime":1,"MsgType":"event",'
            b'"Event":"debug_demo","debug_str":"hello world"}',
            schemas.OtherEventReceived,
            "event.debug_demo",
        ),
    ],
)
def test_every_type_becomes_its_event(doc: bytes, cls: type, key: str) -> None:
    event = to_event(_parse(doc), appid=APPID)
    assert type(event) is cls
    assert event.routing_key() == key
    assert event.appid == APPID
    assert event.openid == "o_user"
    assert event.to_user == "gh_1"
    assert event.correlation_id == event.id
    # What goes on the bus decodes back to the same fact.
    assert schemas.decode(schemas.encode(event)) == event


def test_fields_are_carried_over() -> None:
    page = to_event(
        _parse(
            b'{"ToUserName":"gh_1","FromUserName":"o","CreateTime":1,"MsgType":"miniprogrampage",'
            b'"MsgId":8,"Title":"t","AppId":"wxother","PagePath":"pages/a?x=1",'
            b'"ThumbUrl":"http://thumb","ThumbMediaId":"tm"}'
        ),
        appid=APPID,
    )
    assert isinstance(page, schemas.MiniProgramPageReceived)
    assert (page.title, page.page_appid, page.page_path) == ("t", "wxother", "pages/a?x=1")
    assert (page.thumb_url, page.thumb_media_id, page.msg_id) == ("http://thumb", "tm", 8)
    debug = to_event(
        _parse(
            b'{"ToUserName":"gh_1","FromUserName":"o","CreateTime":1,"MsgType":"event",'
            b'"Event":"debug_demo","debug_str":"hello world"}'
        ),
        appid=APPID,
    )
    assert isinstance(debug, schemas.OtherEventReceived)
    assert debug.fields == {"debug_str": "hello world"}


def test_msg_id_beyond_2_53_is_exact_in_xml_json_and_strings() -> None:
    as_number = b'{"ToUserName":"g","FromUserName":"o","CreateTime":1,"MsgType":"text",'
    as_number += b'"Content":"x","MsgId":6054768590064713728}'
    as_string = as_number.replace(b"6054768590064713728", b'"6054768590064713728"')
    as_string = as_string.replace(b'"CreateTime":1', b'"CreateTime":"1"')
    for doc in (TEXT_XML, as_number, as_string):
        event = to_event(_parse(doc), appid=APPID)
        assert isinstance(event, schemas.TextReceived)
        assert event.msg_id == BIG_MSG_ID
        assert b"6054768590064713728" in schemas.encode(event)


def test_the_same_push_gets_the_same_id_in_any_format() -> None:
    as_json = (
        b'{"ToUserName":"gh_1","FromUserName":"o_user","CreateTime":1409735668,'
        b'"MsgType":"text","Content":"hi","MsgId":"6054768590064713728"}'
    )
    assert event_id(_parse(TEXT_XML), appid=APPID) == event_id(_parse(as_json), appid=APPID)


def test_ids_differ_by_msg_id_and_by_appid() -> None:
    other = TEXT_XML.replace(b"6054768590064713728", b"6054768590064713729")
    assert event_id(_parse(TEXT_XML), appid=APPID) != event_id(_parse(other), appid=APPID)
    assert event_id(_parse(TEXT_XML), appid=APPID) != event_id(_parse(TEXT_XML), appid="wx2")


def _event(
    openid: str = "o", create_time: int = 100, name: str = "user_enter_tempsession"
) -> bytes:
    return (
        b'{"ToUserName":"g","FromUserName":"%s","CreateTime":%d,"MsgType":"event","Event":"%s"}'
        % (openid.encode(), create_time, name.encode())
    )


def test_events_are_the_same_by_sender_time_and_event() -> None:
    base = event_id(_parse(_event()), appid=APPID)
    assert event_id(_parse(_event()), appid=APPID) == base
    assert event_id(_parse(_event(openid="o2")), appid=APPID) != base
    assert event_id(_parse(_event(create_time=101)), appid=APPID) != base
    assert event_id(_parse(_event(name="debug_demo")), appid=APPID) != base


def test_unknown_message_with_a_text_msg_id_dedupes_on_the_text() -> None:
    doc = b'{"ToUserName":"g","FromUserName":"o","CreateTime":1,"MsgType":"voice",'
    doc += b'"MsgId":"49d72d67_1555684067"}'
    event = to_event(_parse(doc), appid=APPID)
    assert isinstance(event, schemas.OtherMessageReceived)
    assert event.msg_id == 0
    assert event.fields["MsgId"] == "49d72d67_1555684067"
    other = doc.replace(b"1555684067", b"1555684068")
    assert event.id != event_id(_parse(other), appid=APPID)
    assert event.id == event_id(_parse(doc), appid=APPID)


def test_unknown_message_without_msg_id_dedupes_like_an_event() -> None:
    doc = b'{"ToUserName":"g","FromUserName":"o","CreateTime":1,"MsgType":"location"}'
    event = to_event(_parse(doc), appid=APPID)
    assert isinstance(event, schemas.OtherMessageReceived)
    assert event.routing_key() == "msg.location"
    later = doc.replace(b'"CreateTime":1', b'"CreateTime":2')
    assert event.id == event_id(_parse(doc), appid=APPID)
    assert event.id != event_id(_parse(later), appid=APPID)


def test_unknown_type_names_are_safe_routing_words() -> None:
    doc = b'{"ToUserName":"g","FromUserName":"o","CreateTime":1,"MsgType":"a.b#*","MsgId":1}'
    event = to_event(_parse(doc), appid=APPID)
    assert event.routing_key() == "msg.a_b_"
