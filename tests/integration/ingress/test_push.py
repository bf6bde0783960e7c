"""Pushes from the simulator's pusher, as WeChat sends them, in every mode and format."""

from __future__ import annotations

import pytest

from libs.common import schemas
from libs.common.wechat import replies
from libs.common.wechat.codec import Format
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.push import Mode
from tests.integration.ingress.harness import (
    AES_KEY,
    APPID,
    GH_ID,
    TOKEN,
    Backend,
    Responder,
    Tap,
    counts,
    ingress,
    pusher,
    sample,
    settings,
)

pytestmark = pytest.mark.integration

CONTENT = '你好 🙂\n第二行 <xml> ]]> & "quotes"'


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_every_type_in_every_mode_and_format(
    backend: Backend, mode: Mode, fmt: Format
) -> None:
    conf = settings(backend, push_mode=mode)
    bus = await backend.bus()
    tap = await Tap(backend, bus).start()
    await Responder(bus).start()
    async with ingress(backend, conf) as url, pusher(url, conf, fmt=fmt) as wechat:
        results = [
            await wechat.text(CONTENT),
            await wechat.image(media_id="media-1", pic_url="http://mmbiz.example/pic"),
            await wechat.miniprogrampage(
                title="卡片", page_path="pages/index/index?x=1", thumb_media_id="thumb-1"
            ),
            await wechat.enter_session("from-button"),
            await wechat.unknown_message("voice", {"MediaId": "v-1", "Format": "amr"}),
            await wechat.unknown_event("debug_demo", {"debug_str": "hello world"}),
        ]
    for result in results:
        assert result.outcome == "success", result
        assert result.attempts == 1, result
    events = await tap.events(at_least=len(results))
    assert len(events) == len(results)
    assert set(counts(events).values()) == {1}
    by_key = {e.routing_key(): e for e in events}
    assert set(by_key) == {
        "msg.text",
        "msg.image",
        "msg.miniprogrampage",
        "event.user_enter_tempsession",
        "msg.voice",
        "event.debug_demo",
    }
    text = by_key["msg.text"]
    assert isinstance(text, schemas.TextReceived)
    assert text.content == CONTENT
    assert text.msg_id == results[0].msg_id
    assert text.msg_id > 2**53
    assert (text.appid, text.to_user, text.openid) == (APPID, GH_ID, results[0].openid)
    image = by_key["msg.image"]
    assert isinstance(image, schemas.ImageReceived)
    assert (image.media_id, image.pic_url) == ("media-1", "http://mmbiz.example/pic")
    page = by_key["msg.miniprogrampage"]
    assert isinstance(page, schemas.MiniProgramPageReceived)
    assert (page.title, page.page_path, page.thumb_media_id) == (
        "卡片",
        "pages/index/index?x=1",
        "thumb-1",
    )
    entered = by_key["event.user_enter_tempsession"]
    assert isinstance(entered, schemas.SessionEntered)
    assert entered.session_from == "from-button"
    voice = by_key["msg.voice"]
    assert isinstance(voice, schemas.OtherMessageReceived)
    assert voice.fields["Format"] == "amr"
    debug = by_key["event.debug_demo"]
    assert isinstance(debug, schemas.OtherEventReceived)
    assert debug.fields == {"debug_str": "hello world"}


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_transfer_decision_answers_transfer(
    backend: Backend, mode: Mode, fmt: Format
) -> None:
    conf = settings(backend, push_mode=mode)
    bus = await backend.bus()
    tap = await Tap(backend, bus).start()
    await Responder(bus, decide=lambda msg: True).start()
    async with ingress(backend, conf) as url, pusher(url, conf, fmt=fmt) as wechat:
        result = await wechat.text("转人工")
        entered = await wechat.enter_session()
        raw = result.answers[-1].body
    assert result.outcome == "transfer_customer_service", result
    # Events are never transferred, whatever the router would say.
    assert entered.outcome == "success"
    # Read the answer as WeChat does: encrypted exactly when the push was, in its format.
    cipher = Cipher.from_key(AES_KEY, APPID)
    reply = replies.read_reply(raw, token=TOKEN, cipher=cipher, fmt=fmt, mode=mode)
    assert reply.kind == "transfer_customer_service"
    assert reply.encrypted == (mode != "plain")
    assert (reply.to_user, reply.from_user) == (result.openid, GH_ID)
    assert raw.lstrip()[:1] == (b"<" if fmt == "xml" else b"{")
    if mode == "plain":
        assert b"transfer_customer_service" in raw
    else:
        assert b"transfer_customer_service" not in raw
    events = await tap.events(at_least=2)
    assert len(events) == 2


async def test_without_a_router_the_answer_is_success_after_the_budget(backend: Backend) -> None:
    conf = settings(backend, decision_budget_ms=300)
    bus = await backend.bus()
    tap = await Tap(backend, bus).start()
    timeouts = sample('wxkf_ingress_decisions_total{result="timeout"}')
    async with ingress(backend, conf) as url, pusher(url, conf) as wechat:
        result = await wechat.text("anyone there?")
        entered = await wechat.enter_session()
    assert result.outcome == "success"
    assert result.attempts == 1
    # It waited the budget (a lower bound only: the machine may be slow, never fast).
    assert result.answers[0].latency_ms >= 300
    assert entered.outcome == "success"
    assert sample('wxkf_ingress_decisions_total{result="timeout"}') == timeouts + 1
    events = await tap.events(at_least=2)
    assert len(events) == 2


async def test_url_verification(backend: Backend) -> None:
    conf = settings(backend)
    async with ingress(backend, conf) as url:
        async with pusher(url, conf) as wechat:
            good = await wechat.verify("4375120948345356249")
        async with pusher(url, conf, token="not-the-token") as stranger:
            bad = await stranger.verify("4375120948345356249")
    assert good.ok
    assert good.body == b"4375120948345356249"
    assert not bad.ok
    assert bad.status == 401
    assert b"4375120948345356249" not in bad.body
