"""Images by asset name: resolved through the media service, re-resolved once when WeChat
says the media_id expired.

The media service here is a small stand-in that speaks its internal API (what
``libs.common.media_client`` calls) and uploads into the simulator; the media service's own
tests cover the real one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from libs.common.schemas import Failed, SendImage, SendMiniProgramPage, Sent
from services.simulator.api import SEND
from services.simulator.config import DEMO_APPID
from services.simulator.state import SimState
from tests.integration.sender.conftest import Rig
from tests.support.waiting import eventually

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 128
INTERNAL_TOKEN = "internal-token-for-tests"


@dataclass
class FakeMedia:
    sim: SimState
    assets: dict[str, bytes]
    down: bool = False
    asked: list[tuple[str, str | None]] = field(default_factory=list)
    """(asset, refused) per request."""
    current: dict[str, str] = field(default_factory=dict)

    async def media_id(self, request: web.Request) -> web.Response:
        assert request.headers.get("Authorization") == f"Bearer {INTERNAL_TOKEN}"
        name = request.match_info["name"]
        refused = request.query.get("refused")
        self.asked.append((name, refused))
        if self.down:
            return web.json_response({"error": "upstream", "message": "WeChat busy"}, status=503)
        if name not in self.assets:
            return web.json_response(
                {"error": "asset_not_found", "message": f"no asset {name}"}, status=404
            )
        if refused or name not in self.current:
            self.current[name] = self.sim.upload_media(self.assets[name]).media_id
        now = self.sim.now()
        return web.json_response(
            {"media_id": self.current[name], "created_at": now, "expires_at": now + 3 * 86400}
        )


@pytest.fixture
async def media(rig: Rig) -> AsyncIterator[tuple[FakeMedia, str]]:
    fake = FakeMedia(sim=rig.sim, assets={"welcome.png": PNG})
    app = web.Application()
    app.router.add_get("/v1/assets/{name}/media_id", fake.media_id)
    server = TestServer(app)
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def image(user: str, **fields: str) -> SendImage:
    return SendImage(appid=DEMO_APPID, openid=user, correlation_id=uuid.uuid4().hex, **fields)


async def test_an_image_by_asset_is_sent_with_a_valid_media_id(
    rig: Rig, media: tuple[FakeMedia, str]
) -> None:
    fake, url = media
    await rig.start_sender(media_url=url, internal_token=INTERNAL_TOKEN)
    user = rig.openid()
    await rig.user_message(user)
    cmd = image(user, asset="welcome.png")
    await rig.send(cmd)
    assert isinstance((await rig.settled([cmd]))[cmd.id], Sent)
    [delivered] = rig.inbox(user)
    assert delivered.msgtype == "image"
    assert delivered.body == {"media_id": fake.current["welcome.png"]}


async def test_an_expired_media_id_is_resolved_again_once(
    rig: Rig, media: tuple[FakeMedia, str]
) -> None:
    fake, url = media
    await rig.start_sender(media_url=url, internal_token=INTERNAL_TOKEN)
    user = rig.openid()
    first = image(user, asset="welcome.png")
    await rig.user_message(user)
    await rig.send(first)
    await rig.settled([first])
    old = fake.current["welcome.png"]
    rig.sim.clock.advance(3 * 86400 + 60)  # WeChat forgets temp media after 3 days
    await rig.user_message(user)
    second = image(user, asset="welcome.png")
    await rig.send(second)
    outcome = (await rig.settled([second]))[second.id]
    assert isinstance(outcome, Sent)
    assert fake.asked[-2:] == [("welcome.png", None), ("welcome.png", old)]
    assert rig.inbox(user)[-1].body == {"media_id": fake.current["welcome.png"]}
    assert fake.current["welcome.png"] != old
    assert rig.sim.stats.total(SEND, 40007) == 1


async def test_a_card_thumb_by_asset_is_resolved_too(
    rig: Rig, media: tuple[FakeMedia, str]
) -> None:
    fake, url = media
    await rig.start_sender(media_url=url, internal_token=INTERNAL_TOKEN)
    user = rig.openid()
    await rig.user_message(user)
    cmd = SendMiniProgramPage(
        appid=DEMO_APPID,
        openid=user,
        correlation_id=uuid.uuid4().hex,
        title="Orders",
        pagepath="pages/orders/index?tab=open",
        thumb_asset="welcome.png",
    )
    await rig.send(cmd)
    assert isinstance((await rig.settled([cmd]))[cmd.id], Sent)
    assert rig.inbox(user)[0].body["thumb_media_id"] == fake.current["welcome.png"]


async def test_an_unknown_asset_fails_at_once(rig: Rig, media: tuple[FakeMedia, str]) -> None:
    _, url = media
    await rig.start_sender(media_url=url, internal_token=INTERNAL_TOKEN)
    user = rig.openid()
    await rig.user_message(user)
    cmd = image(user, asset="missing.png")
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Failed)
    assert outcome.attempts == 1
    assert "asset_not_found" in outcome.errmsg
    assert rig.sim.stats.total(SEND) == 0


async def test_a_media_service_outage_is_retried(rig: Rig, media: tuple[FakeMedia, str]) -> None:
    fake, url = media
    await rig.start_sender(media_url=url, internal_token=INTERNAL_TOKEN)
    user = rig.openid()
    await rig.user_message(user)
    fake.down = True
    cmd = image(user, asset="welcome.png")
    await rig.send(cmd)
    await eventually(lambda: len(fake.asked), lambda n: n >= 2, what="a second try")
    fake.down = False
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Sent)
    assert outcome.attempts >= 2


async def test_a_refused_media_id_without_an_asset_fails_with_its_errcode(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    cmd = image(user, media_id="NO-SUCH-MEDIA")
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Failed)
    assert outcome.errcode == 40007


async def test_an_asset_without_a_media_service_fails_clearly(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    commands = [image(user, asset="welcome.png"), image(user)]
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    no_service, nothing = (outcomes[c.id] for c in commands)
    assert isinstance(no_service, Failed)
    assert "WXKF_MEDIA_URL" in no_service.errmsg
    assert isinstance(nothing, Failed)
    assert "media_id or an asset" in nothing.errmsg
