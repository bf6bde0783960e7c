"""The send API: validation of each msgtype and the reply window (WECHAT.md §7)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from sim_helpers import JPEG, OPENID, SEND, START, Client, call, text

from services.simulator.clock import SimClock
from services.simulator.config import SimConfig
from services.simulator.state import SimState


async def test_user_message_opens_five_then_45047(
    client: Client, state: SimState, token: str
) -> None:
    state.user_message(OPENID)
    for i in range(5):
        answer = await call(client, SEND, token, text(content=f"m{i}"))
        assert answer == {"errcode": 0, "errmsg": "ok"}
    sixth = await call(client, SEND, token, text(content="m5"))
    assert sixth["errcode"] == 45047
    assert sixth["errmsg"].startswith("out of response count limit rid: ")
    assert [m.body["content"] for m in state.inbox(OPENID)] == [f"m{i}" for i in range(5)]
    assert state.stats.total(SEND, 0) == 5
    assert state.stats.total(SEND, 45047) == 1


async def test_window_closes_after_48_hours(
    client: Client, state: SimState, clock: SimClock, token: str
) -> None:
    state.user_message(OPENID)
    clock.advance(48 * 3600 - 1)
    token = state.token_for_tests()
    assert (await call(client, SEND, token, text()))["errcode"] == 0
    clock.advance(1)
    assert (await call(client, SEND, token, text()))["errcode"] == 45015


async def test_new_user_message_renews_count_and_time(
    client: Client, state: SimState, clock: SimClock, token: str
) -> None:
    state.user_message(OPENID)
    for _ in range(5):
        await call(client, SEND, token, text())
    clock.advance(60)
    state.user_message(OPENID)
    for _ in range(5):
        assert (await call(client, SEND, token, text()))["errcode"] == 0
    assert (await call(client, SEND, token, text()))["errcode"] == 45047


async def test_entering_grants_two_within_a_minute(
    client: Client, state: SimState, clock: SimClock, token: str
) -> None:
    state.user_entered(OPENID)
    assert (await call(client, SEND, token, text()))["errcode"] == 0
    assert (await call(client, SEND, token, text()))["errcode"] == 0
    assert (await call(client, SEND, token, text()))["errcode"] == 45047
    clock.advance(60)
    assert (await call(client, SEND, token, text()))["errcode"] == 45015


async def test_entry_grant_expires_after_a_minute_unused(
    client: Client, state: SimState, clock: SimClock, token: str
) -> None:
    state.user_entered(OPENID)
    clock.advance(59)
    assert (await call(client, SEND, token, text()))["errcode"] == 0
    clock.advance(1)
    assert (await call(client, SEND, token, text()))["errcode"] == 45015


async def test_sends_take_from_the_grant_that_ends_first(
    client: Client, state: SimState, token: str
) -> None:
    state.user_message(OPENID)
    state.user_entered(OPENID)
    for _ in range(7):
        assert (await call(client, SEND, token, text()))["errcode"] == 0
    assert (await call(client, SEND, token, text()))["errcode"] == 45047
    grants = state.user(OPENID).grants
    assert grants["enter"].count == 0
    assert grants["message"].count == 0


async def test_no_window_for_a_stranger(client: Client, token: str) -> None:
    assert (await call(client, SEND, token, text()))["errcode"] == 45015


@pytest.mark.parametrize("config", [SimConfig(known_users_only=True)])
async def test_unknown_user_when_users_are_modelled(client: Client, token: str) -> None:
    assert (await call(client, SEND, token, text()))["errcode"] == 40003


@pytest.mark.parametrize(
    "config",
    [
        SimConfig(
            window_message_count=2,
            window_message_s=10,
            window_enter_count=1,
            window_enter_s=5,
            text_max_bytes=6,
            bad_type_errcode=45162,
        )
    ],
)
async def test_every_number_is_configurable(
    client: Client, state: SimState, clock: SimClock, token: str
) -> None:
    state.user_message(OPENID)
    assert (await call(client, SEND, token, text(content="一二")))["errcode"] == 0
    assert (await call(client, SEND, token, text(content="一二三")))["errcode"] == 45002
    assert (await call(client, SEND, token, text()))["errcode"] == 0
    assert (await call(client, SEND, token, text()))["errcode"] == 45047
    clock.advance(10)
    assert (await call(client, SEND, token, text()))["errcode"] == 45015
    state.user_entered(OPENID)
    assert (await call(client, SEND, token, text()))["errcode"] == 0
    assert (await call(client, SEND, token, text()))["errcode"] == 45047
    bad = {"touser": OPENID, "msgtype": "video", "video": {}}
    assert (await call(client, SEND, token, bad))["errcode"] == 45162


async def test_text_limit_counts_utf8_bytes(client: Client, state: SimState, token: str) -> None:
    state.user_message(OPENID)
    exact = "好" * 682 + "ab"  # 2046 + 2 = 2048 bytes
    assert (await call(client, SEND, token, text(content=exact)))["errcode"] == 0
    over = exact + "c"
    assert (await call(client, SEND, token, text(content=over)))["errcode"] == 45002


def _bodies(media_id: str) -> list[tuple[str, Any, int]]:
    o = OPENID
    return [
        ("empty body", b"", 44002),
        ("blank body", b"  \n", 44002),
        ("not json", b"{touser", 47001),
        ("array", b"[1]", 47001),
        (
            "unicode escape",
            b'{"touser":"' + o.encode() + b'","msgtype":"text","text":{"content":"\\u4f60"}}',
            40033,
        ),
        ("no touser", {"msgtype": "text", "text": {"content": "x"}}, 40003),
        ("empty touser", text(openid=""), 40003),
        ("touser not a string", {"touser": 5, "msgtype": "text", "text": {"content": "x"}}, 40003),
        ("touser with spaces", text(openid="o user"), 40003),
        ("no msgtype", {"touser": o, "text": {"content": "x"}}, 40008),
        ("unknown msgtype", {"touser": o, "msgtype": "voice", "voice": {}}, 40008),
        ("text not an object", {"touser": o, "msgtype": "text", "text": "x"}, 47001),
        ("empty text", text(content=""), 44004),
        ("missing content", {"touser": o, "msgtype": "text", "text": {}}, 44004),
        ("content a number", {"touser": o, "msgtype": "text", "text": {"content": 5}}, 47001),
        ("image without id", {"touser": o, "msgtype": "image", "image": {}}, 40007),
        ("image unknown id", {"touser": o, "msgtype": "image", "image": {"media_id": "x"}}, 40007),
        ("link without url", {"touser": o, "msgtype": "link", "link": {"title": "t"}}, 47001),
        ("link without title", {"touser": o, "msgtype": "link", "link": {"url": "u"}}, 47001),
        (
            "link bad description",
            {"touser": o, "msgtype": "link", "link": {"title": "t", "url": "u", "description": 1}},
            47001,
        ),
        (
            "card without thumb",
            {
                "touser": o,
                "msgtype": "miniprogrampage",
                "miniprogrampage": {"title": "t", "pagepath": "p"},
            },
            40007,
        ),
        (
            "card without pagepath",
            {
                "touser": o,
                "msgtype": "miniprogrampage",
                "miniprogrampage": {"title": "t", "thumb_media_id": media_id},
            },
            47001,
        ),
    ]


async def test_each_validation_error_delivers_nothing(
    client: Client, state: SimState, token: str
) -> None:
    media_id = state.upload_media(JPEG).media_id
    state.user_message(OPENID)
    for name, body, errcode in _bodies(media_id):
        answer = await call(client, SEND, token, body)
        assert answer["errcode"] == errcode, name
        assert " rid: " in answer["errmsg"], name
    assert state.inbox(OPENID) == []
    assert state.user(OPENID).grants["message"].count == 5


async def test_escaped_backslash_is_not_a_unicode_escape(
    client: Client, state: SimState, token: str
) -> None:
    state.user_message(OPENID)
    body = b'{"touser":"' + OPENID.encode() + b'","msgtype":"text","text":{"content":"a\\\\u4f60"}}'
    assert (await call(client, SEND, token, body))["errcode"] == 0
    assert state.inbox(OPENID)[0].body["content"] == "a\\u4f60"


async def test_python_json_dumps_default_is_refused(
    client: Client, state: SimState, token: str
) -> None:
    state.user_message(OPENID)
    resp = await client.post(SEND, params={"access_token": token}, json=text(content="你好"))
    assert (await resp.json(content_type=None))["errcode"] == 40033


async def test_every_msgtype_is_delivered_with_its_body(
    client: Client, state: SimState, clock: SimClock, token: str
) -> None:
    media_id = state.upload_media(JPEG).media_id
    state.user_message(OPENID)
    link = {"title": "Happy Day", "description": "Is Really", "url": "https://x", "thumb_url": "t"}
    card = {"title": "t", "pagepath": "pages/index/index?foo=bar", "thumb_media_id": media_id}
    bodies: list[dict[str, Any]] = [
        text(content="hi\n😀"),
        {"touser": OPENID, "msgtype": "image", "image": {"media_id": media_id}},
        {"touser": OPENID, "msgtype": "link", "link": link},
        {"touser": OPENID, "msgtype": "miniprogrampage", "miniprogrampage": card},
    ]
    for body in bodies:
        clock.advance(1)
        assert (await call(client, SEND, token, body))["errcode"] == 0
    inbox = state.inbox(OPENID)
    assert [m.msgtype for m in inbox] == ["text", "image", "link", "miniprogrampage"]
    assert [m.seq for m in inbox] == [1, 2, 3, 4]
    assert [m.time for m in inbox] == [START + i for i in range(1, 5)]
    assert inbox[0].body == {"content": "hi\n😀"}
    assert inbox[2].body == link
    assert inbox[3].body == card
    resp = await client.get(f"/sim/users/{OPENID}/inbox")
    listed = (await resp.json())["messages"]
    assert [m["msgtype"] for m in listed] == ["text", "image", "link", "miniprogrampage"]
    assert listed[0] == {"seq": 1, "time": START + 1, "msgtype": "text", "body": inbox[0].body}


async def test_expired_media_in_a_send_is_40007(
    client: Client, state: SimState, clock: SimClock
) -> None:
    media_id = state.upload_media(JPEG).media_id
    clock.advance(3 * 86400)
    state.user_message(OPENID)
    token = state.token_for_tests()
    body = {"touser": OPENID, "msgtype": "image", "image": {"media_id": media_id}}
    assert (await call(client, SEND, token, body))["errcode"] == 40007


@pytest.mark.parametrize("config", [SimConfig(max_body_bytes=200)])
async def test_oversized_body_is_refused_with_413(
    client: Client, state: SimState, token: str
) -> None:
    state.user_message(OPENID)
    resp = await client.post(
        SEND, params={"access_token": token}, data=msgspec.json.encode(text(content="x" * 300))
    )
    assert resp.status == 413
    assert state.inbox(OPENID) == []
