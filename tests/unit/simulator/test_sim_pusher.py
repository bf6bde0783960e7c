"""The pusher: WeChat's pushes (built by the project codec), retries and reply reading."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestServer
from sim_helpers import CIPHER, OPENID, PNG, Ingress, ingress_app

from libs.common.wechat import codec
from services.simulator.app import create_app, running
from services.simulator.config import DEMO_AES_KEY, DEMO_GH_ID
from services.simulator.errors import PushError
from services.simulator.pusher import USER_NOTICE, Pusher, new_msg_id
from services.simulator.state import SimState


@pytest.fixture
async def ingress() -> AsyncIterator[tuple[Ingress, str]]:
    endpoint = Ingress()
    async with TestServer(ingress_app(endpoint)) as server:
        yield endpoint, str(server.make_url("/wechat"))
        endpoint.release.set()


def pusher(url: str, state: SimState | str | None = None, **kw: Any) -> Pusher:
    return Pusher(url, aes_key=DEMO_AES_KEY, sim=state, openid=OPENID, **kw)


@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_safe_mode_envelope_and_query_are_wechats(
    ingress: tuple[Ingress, str], state: SimState, fmt: str
) -> None:
    endpoint, url = ingress
    async with pusher(url, state, fmt=fmt) as p:
        result = await p.text("你好 😀\n<b>&")
    assert result.outcome == "success"
    query, body, content_type = endpoint.received[0]
    assert list(query) == [
        "signature",
        "timestamp",
        "nonce",
        "openid",
        "encrypt_type",
        "msg_signature",
    ]
    assert query["openid"] == OPENID
    assert query["encrypt_type"] == "aes"
    encrypt = endpoint.opened[0]
    assert encrypt.encrypted
    if fmt == "xml":
        assert content_type == "text/xml"
        assert body.startswith(b"<xml><ToUserName><![CDATA[" + DEMO_GH_ID.encode() + b"]]>")
        assert body.endswith(b"]]></Encrypt></xml>")
        assert list(codec.document(body, "xml")) == ["ToUserName", "Encrypt"]
    else:
        assert content_type == "application/json"
        assert list(msgspec.json.decode(body)) == ["ToUserName", "Encrypt"]
    # The ciphertext holds the message in WeChat's field order.
    envelope = codec.document(body, fmt)  # type: ignore[arg-type]
    inner = CIPHER.decrypt(envelope["Encrypt"])
    doc = codec.document(inner, fmt)  # type: ignore[arg-type]
    assert list(doc) == ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId"]
    msg = endpoint.opened[0].message
    assert isinstance(msg, codec.TextMessage)
    assert msg.content == "你好 😀\n<b>&"
    assert msg.from_user == OPENID
    assert msg.to_user == DEMO_GH_ID
    assert msg.msg_id == result.msg_id
    assert msg.msg_id is not None
    assert msg.msg_id > 2**53
    assert msg.create_time == int(state.now())


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_every_type_in_every_mode_opens_with_the_codec(
    state: SimState, mode: str, fmt: str
) -> None:
    endpoint = Ingress(mode=mode, fmt=fmt)
    async with TestServer(ingress_app(endpoint)) as server:
        url = str(server.make_url("/wechat"))
        key = DEMO_AES_KEY if mode != "plain" else None
        async with Pusher(url, aes_key=key, mode=mode, fmt=fmt, sim=state) as p:  # type: ignore[arg-type]
            results = [
                await p.text("hi"),
                await p.image(PNG),
                await p.miniprogrampage(title="t", page_path="pages/a?x=1", thumb_media_id="m"),
                await p.enter_session("button-1"),
                await p.unknown_message("voice", {"MediaId": "v1"}),
                await p.unknown_event("debug_demo", {"debug_str": "hello"}),
            ]
    assert [r.outcome for r in results] == ["success"] * 6
    kinds = [type(o.message) for o in endpoint.opened]
    assert kinds == [
        codec.TextMessage,
        codec.ImageMessage,
        codec.MiniProgramPageMessage,
        codec.EnterSessionEvent,
        codec.UnknownMessage,
        codec.UnknownEvent,
    ]
    assert all(o.encrypted == (mode != "plain") for o in endpoint.opened)
    image = endpoint.opened[1].message
    assert isinstance(image, codec.ImageMessage)
    assert state.get_media(image.media_id).data == PNG
    enter = endpoint.opened[3].message
    assert isinstance(enter, codec.EnterSessionEvent)
    assert enter.session_from == "button-1"
    unknown = endpoint.opened[4].message
    assert isinstance(unknown, codec.UnknownMessage)
    assert unknown.msg_id == results[4].msg_id
    assert unknown.fields["MediaId"] == "v1"
    if mode == "plain":
        assert "encrypt_type" not in endpoint.received[0][0]


async def test_pushes_open_the_reply_window(ingress: tuple[Ingress, str], state: SimState) -> None:
    _, url = ingress
    async with pusher(url, state) as p:
        await p.enter_session()
        assert state.user(OPENID).grants["enter"].count == 2
        assert "message" not in state.user(OPENID).grants
        await p.unknown_event("wxa_media_check")
        assert state.user(OPENID).messages_sent == 0
        await p.text("hello")
    grant = state.user(OPENID).grants["message"]
    assert (grant.count, grant.until) == (5, int(state.now()) + 48 * 3600)
    assert state.user(OPENID).messages_sent == 1


async def test_pusher_talks_to_a_simulator_by_url(ingress: tuple[Ingress, str]) -> None:
    _, url = ingress
    sim_state = SimState()
    async with running(create_app(state=sim_state)) as sim_url, pusher(url, sim_url) as p:
        await p.text("hello")
        result = await p.image(PNG)
    assert result.ok
    assert sim_state.user(OPENID).grants["message"].count == 5
    assert sim_state.user(OPENID).messages_sent == 2
    assert len(sim_state.media.items) == 1


async def test_slow_answer_is_retried_with_the_same_request(
    ingress: tuple[Ingress, str], state: SimState
) -> None:
    endpoint, url = ingress
    endpoint.script = ["slow"]
    async with pusher(url, state, timeout_s=0.2) as p:
        result = await p.text("retry me")
    assert result.outcome == "success"
    assert result.attempts == 2
    assert [a.error for a in result.answers] == ["timeout", None]
    (q1, b1, _), (q2, b2, _) = endpoint.received
    assert (q1, b1) == (q2, b2)
    first, second = (o.message for o in endpoint.opened)
    assert isinstance(first, codec.TextMessage)
    assert isinstance(second, codec.TextMessage)
    assert first.msg_id == second.msg_id == result.msg_id


async def test_three_failed_attempts_show_the_user_notice(
    ingress: tuple[Ingress, str], state: SimState
) -> None:
    endpoint, url = ingress
    endpoint.script = ["500", "drop", "500"]
    async with pusher(url, state) as p:
        result = await p.text("hi")
    assert result.outcome == "failed"
    assert result.attempts == 3
    assert [a.status for a in result.answers] == [500, None, 500]
    assert result.answers[1].error == "connection: ServerDisconnectedError"
    assert result.user_notice == USER_NOTICE == "该小程序客服暂时无法提供服务，请稍后再试"
    assert len({m.message.msg_id for m in endpoint.opened}) == 1  # type: ignore[union-attr]


async def test_attempts_are_configurable(ingress: tuple[Ingress, str], state: SimState) -> None:
    endpoint, url = ingress
    endpoint.script = ["500", "500", "500", "500"]
    async with pusher(url, state, attempts=4) as p:
        result = await p.text("hi")
    assert result.attempts == 4
    assert result.outcome == "failed"


async def test_malformed_answer_is_invalid_and_retried(
    ingress: tuple[Ingress, str], state: SimState
) -> None:
    endpoint, url = ingress
    endpoint.script = ["garbage", "garbage", "garbage"]
    async with pusher(url, state) as p:
        result = await p.text("hi")
    assert result.outcome == "invalid"
    assert result.attempts == 3
    assert result.user_notice == USER_NOTICE
    assert result.answers[0].body == b"ok"
    assert result.answers[0].reason


async def test_empty_answer_is_accepted(ingress: tuple[Ingress, str], state: SimState) -> None:
    endpoint, url = ingress
    endpoint.script = ["empty"]
    async with pusher(url, state) as p:
        result = await p.text("hi")
    assert (result.outcome, result.attempts, result.user_notice) == ("empty", 1, None)


@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_encrypted_transfer_reply_is_read(
    ingress: tuple[Ingress, str], state: SimState, fmt: str
) -> None:
    endpoint, url = ingress
    endpoint.script = ["transfer"]
    async with pusher(url, state, fmt=fmt) as p:
        result = await p.text("人工")
    assert result.transferred
    assert result.attempts == 1
    assert result.ack_latency_ms is not None


async def test_transfer_must_be_encrypted_in_safe_mode_and_name_the_user(
    ingress: tuple[Ingress, str], state: SimState
) -> None:
    endpoint, url = ingress
    endpoint.script = ["plain_transfer", "transfer_other", "transfer"]
    async with pusher(url, state) as p:
        result = await p.text("人工")
    assert [a.reply for a in result.answers] == ["invalid", "invalid", "transfer_customer_service"]
    assert "another user" in result.answers[1].reason


async def test_url_verification(ingress: tuple[Ingress, str]) -> None:
    _, url = ingress
    async with pusher(url) as p:
        good = await p.verify("4375120948345356249")
    assert good.ok
    assert good.body == b"4375120948345356249"
    async with Pusher(url, token="wrong") as p:
        bad = await p.verify()
    assert not bad.ok
    assert bad.status == 500  # the endpoint refused the signature


async def test_unreachable_url(state: SimState) -> None:
    async with pusher("http://127.0.0.1:9/wechat", state, attempts=2) as p:
        result = await p.text("hi")
        verified = await p.verify()
    assert result.outcome == "failed"
    assert all(a.error and a.error.startswith("connection: ") for a in result.answers)
    assert not verified.ok
    assert verified.error is not None


def test_msg_ids_are_unique_and_beyond_floats() -> None:
    ids = [new_msg_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(2**53 < i < 2**63 for i in ids)


@pytest.mark.parametrize(
    "kw",
    [
        {"mode": "safe"},
        {"mode": "compatible"},
        {"mode": "secret"},
        {"fmt": "yaml"},
        {"aes_key": "short"},
        {"token": ""},
        {"attempts": 0},
        {"timeout_s": 0},
    ],
)
def test_bad_pusher_config(kw: dict[str, Any]) -> None:
    with pytest.raises(PushError):
        Pusher("http://127.0.0.1:1/wechat", **kw)


async def test_image_without_a_simulator_needs_a_media_id() -> None:
    async with Pusher("http://127.0.0.1:1/wechat") as p:
        with pytest.raises(PushError, match="media_id"):
            await p.image(PNG)


async def test_image_the_simulator_refuses(state: SimState) -> None:
    async with Pusher("http://127.0.0.1:1/wechat", sim=state) as p:
        with pytest.raises(PushError, match="refused the image"):
            await p.image(b"not an image")
