"""Downloads: streamed from WeChat with its headers; WeChat's errors as clear HTTP errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from services.simulator.app import running
from services.simulator.faults import Fault, FaultRule
from tests.integration.media.harness import GIF_MAGIC, MakeMedia, Media, image
from tests.support.metrics import sample
from tests.support.waiting import eventually

GET = "/cgi-bin/media/get"


async def upload(media: Media, data: bytes) -> str:
    resp = await media.client.post("/v1/media", data=data)
    assert resp.status == 200, await resp.text()
    media_id: str = (await resp.json())["media_id"]
    return media_id


async def test_a_download_passes_wechat_s_headers_through(media: Media) -> None:
    data = image(GIF_MAGIC, size=300_000)
    media_id = await upload(media, data)
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/gif"
    assert resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{media_id}.gif"'
    assert "Transfer-Encoding" not in resp.headers
    assert await resp.read() == data


async def test_an_image_a_user_sent_can_be_downloaded(media: Media) -> None:
    data = image(size=20_000)
    pushed = media.sim.upload_media(data)  # what WeChat holds for an inbound image push
    resp = await media.client.get(f"/v1/media/{pushed.media_id}")
    assert await resp.read() == data


async def test_an_unknown_media_id_is_not_found(media: Media) -> None:
    resp = await media.client.get("/v1/media/no-such-id")
    assert resp.status == 404
    body = await resp.json()
    assert body["error"] == "media_not_found"
    assert body["errcode"] == 40007
    assert body["retryable"] is False


async def test_a_media_id_we_uploaded_says_expired_after_three_days(media: Media) -> None:
    media_id = await upload(media, image())
    media.sim.clock.advance(3 * 86400)
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 410
    body = await resp.json()
    assert body["error"] == "media_expired"
    assert body["errcode"] == 40007


async def test_an_impossible_media_id_is_refused_without_asking_wechat(media: Media) -> None:
    resp = await media.client.get("/v1/media/" + "x" * 300)
    assert resp.status == 400
    assert (await resp.json())["error"] == "bad_media_id"
    assert media.downloads() == 0


async def test_an_expired_token_is_refreshed_once_and_the_download_succeeds(media: Media) -> None:
    data = image()
    media_id = await upload(media, data)
    refreshes = media.sim.stats.tokens["stable_token"]
    media.sim.clock.advance(7200 + 1)  # the token is dead; the media lives 3 days
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 200
    assert await resp.read() == data
    assert media.sim.stats.tokens["stable_token"] == refreshes + 1


async def test_a_refused_token_is_force_refreshed_once(media: Media) -> None:
    data = image()
    media_id = await upload(media, data)
    media.sim.faults.add(FaultRule(path=GET, sequence=[Fault(errcode=40001)]))
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 200
    assert await resp.read() == data
    assert media.sim.stats.tokens["stable_forced"] == 1


def refreshes_ok() -> float:
    """Token refreshes of the media service that brought a token (normal or forced)."""
    return sum(
        sample("wxkf_wechat_token_refreshes_total", service="media", kind=kind, outcome="ok")
        for kind in ("normal", "forced")
    )


async def test_a_token_wechat_ended_early_is_refreshed_once_and_the_download_succeeds(
    media: Media,
) -> None:
    data = image()
    media_id = await upload(media, data)
    before, refreshed = media.sim.stats.tokens["stable_token"], refreshes_ok()
    # WeChat ends the token at its natural end while the service still counts it valid (its
    # clock, or WeChat's, off by a little): the download is answered 42001.
    media.sim.tokens.current["stable_token"].expires_at = media.sim.now()
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 200
    assert await resp.read() == data
    assert media.sim.stats.total(GET, 42001) == 1
    assert media.sim.stats.total(GET, 0) == 1
    assert media.sim.stats.tokens["stable_token"] == before + 1
    assert media.sim.stats.tokens["stable_rotated"] == 1
    assert media.sim.stats.tokens["stable_forced"] == 0
    assert refreshes_ok() == refreshed + 1


async def test_a_42001_for_a_live_token_is_force_refreshed_once(media: Media) -> None:
    data = image()
    media_id = await upload(media, data)
    refreshed = refreshes_ok()
    media.sim.faults.add(FaultRule(path=GET, sequence=[Fault(errcode=42001)]))
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 200
    assert await resp.read() == data
    assert media.sim.stats.total(GET, 42001) == 1
    # The normal refresh hands back the refused token (WeChat still holds it valid): forced.
    assert media.sim.stats.tokens["stable_forced"] == 1
    assert refreshes_ok() == refreshed + 1


@pytest.mark.parametrize(
    "fault",
    [Fault(errcode=-1), Fault(status=502), Fault(drop=True), Fault(errcode=45011)],
    ids=["busy", "http502", "dropped", "frequency"],
)
async def test_transient_failures_are_retried(media: Media, fault: Fault) -> None:
    data = image()
    media_id = await upload(media, data)
    media.sim.faults.add(FaultRule(path=GET, sequence=[fault, fault]))
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 200
    assert await resp.read() == data
    assert media.downloads() == 3


async def test_a_failure_that_outlasts_the_deadline_is_an_upstream_error(
    make_media: MakeMedia,
) -> None:
    media = await make_media(media_upstream_deadline_s=0.3)
    media_id = await upload(media, image())
    media.sim.faults.add(FaultRule(path=GET, rate=1.0, outcomes=[Fault(errcode=-1)], seed=1))
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 502
    body = await resp.json()
    assert body == {
        "error": "upstream_error",
        "message": body["message"],
        "errcode": -1,
        "retryable": True,
    }


async def test_a_permanent_wechat_error_is_not_retried(media: Media) -> None:
    media_id = await upload(media, image())
    media.sim.faults.add(FaultRule(path=GET, sequence=[Fault(errcode=48001)]))
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 502
    body = await resp.json()
    assert (body["errcode"], body["retryable"]) == (48001, False)
    assert media.downloads() == 1


async def test_the_cache_answers_a_second_download_without_wechat(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    media = await make_media(media_cache_dir=str(tmp_path / "cache"))
    data = image(size=100_000)
    media_id = await upload(media, data)
    for _ in range(3):
        resp = await media.client.get(f"/v1/media/{media_id}")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/png"
        assert resp.headers["Content-Length"] == str(len(data))
        assert await resp.read() == data
    assert media.downloads() == 1


async def test_the_cache_does_not_outlive_the_media(make_media: MakeMedia, tmp_path: Path) -> None:
    media = await make_media(media_cache_dir=str(tmp_path / "cache"))
    media_id = await upload(media, image())
    assert (await media.client.get(f"/v1/media/{media_id}")).status == 200
    media.sim.clock.advance(3 * 86400)
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 410
    assert list((tmp_path / "cache").iterdir()) == []


async def test_a_cache_entry_ends_with_the_media_even_when_it_is_younger(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    media = await make_media(media_cache_dir=str(tmp_path / "cache"))
    data = image()
    media_id = await upload(media, data)
    media.sim.clock.advance(2 * 86400)  # first downloaded (and cached) two days after upload
    assert await (await media.client.get(f"/v1/media/{media_id}")).read() == data
    media.sim.clock.advance(86400 - 1)  # the media's last second: the cache still answers
    assert await (await media.client.get(f"/v1/media/{media_id}")).read() == data
    assert media.downloads() == 1
    expired = sample("wxkf_media_downloads_total", outcome="media_expired")
    media.sim.clock.advance(1)  # 3 days after the upload; the cache entry is one day old
    resp = await media.client.get(f"/v1/media/{media_id}")
    assert resp.status == 410
    body = await resp.json()
    assert (body["error"], body["errcode"]) == ("media_expired", 40007)
    assert sample("wxkf_media_downloads_total", outcome="media_expired") == expired + 1
    assert list((tmp_path / "cache").iterdir()) == []  # the entry is gone with the media


async def test_a_download_wechat_breaks_off_ends_short_and_is_not_cached(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    announced, sent = 1024 * 1024, 100 * 1024

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "t" * 32, "expires_in": 7200})

    async def get_media(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = announced
        await resp.prepare(request)
        await resp.write(image(size=sent))
        assert request.transport is not None
        request.transport.close()
        return resp

    breaking = web.Application()
    breaking.router.add_post("/cgi-bin/stable_token", token)
    breaking.router.add_get("/cgi-bin/media/get", get_media)
    async with running(breaking) as url:
        media = await make_media(wechat_api_base=url, media_cache_dir=str(tmp_path / "cache"))
        broken = sample("wxkf_media_downloads_total", outcome="upstream_broken")
        resp = await media.client.get("/v1/media/some-id")
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(announced)
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert sample("wxkf_media_downloads_total", outcome="upstream_broken") == broken + 1
    assert list((tmp_path / "cache").iterdir()) == []


async def test_a_client_leaving_mid_download_leaves_no_cache_entry(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    media = await make_media(media_cache_dir=str(tmp_path / "cache"))
    # 32 MB made and hashed in a thread: on the loop it would block it for tenths of a second.
    big = await asyncio.to_thread(image, size=32 * 1024 * 1024)
    pushed = await asyncio.to_thread(media.sim.upload_media, big)
    gone = sample("wxkf_media_downloads_total", outcome="abandoned")
    url = media.client.make_url(f"/v1/media/{pushed.media_id}")
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        await resp.content.readexactly(64 * 1024)
        resp.close()  # hang up with most of the body unread
    await eventually(
        lambda: sample("wxkf_media_downloads_total", outcome="abandoned"),
        lambda value: value == gone + 1,
        what="the service noticing the client left",
    )
    assert list((tmp_path / "cache").iterdir()) == []
