from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import pytest

from services.simulator.faults import Fault, FaultRule
from tests.integration.media.harness import (
    GIF_MAGIC,
    JPEG_MAGIC,
    PNG_MAGIC,
    MakeMedia,
    Media,
    image,
)

UPLOAD = "/cgi-bin/media/upload"


async def test_a_raw_upload_round_trips_byte_for_byte(media: Media) -> None:
    data = image(size=50_000)
    resp = await media.client.post("/v1/media", data=data)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["reused"] is False
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["size"] == len(data)
    assert body["content_type"] == "image/png"
    assert body["expires_at"] == body["created_at"] + 3 * 86400
    assert body["created_at"] == int(media.sim.now())

    got = await media.client.get(f"/v1/media/{body['media_id']}")
    assert got.status == 200
    assert got.headers["Content-Type"] == "image/png"
    assert got.headers["Content-Length"] == str(len(data))
    assert await got.read() == data


async def test_a_multipart_upload_reaches_wechat_with_the_detected_extension(media: Media) -> None:
    data = image(JPEG_MAGIC, size=10_000)
    form = aiohttp.FormData()
    # The client's name and type are wrong on purpose: the bytes decide.
    form.add_field("media", data, filename="photo.png", content_type="image/png")
    resp = await media.client.post("/v1/media", data=form)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["content_type"] == "image/jpeg"
    kept = media.sim.media.items[body["media_id"]]
    assert kept.data == data
    assert kept.kind == "jpeg"
    # WeChat refuses a file name without an extension; the service names the file after the
    # bytes' type, never the client's name.
    assert kept.received_filename is not None
    assert kept.received_filename.endswith(".jpg")
    assert "photo" not in kept.received_filename


@pytest.mark.parametrize(
    ("magic", "ext"),
    [(JPEG_MAGIC, "jpg"), (PNG_MAGIC, "png"), (GIF_MAGIC, "gif")],
    ids=["jpeg", "png", "gif"],
)
async def test_a_raw_upload_reaches_wechat_named_after_its_type(
    media: Media, magic: bytes, ext: str
) -> None:
    # A raw body has no name at all: the service must still give WeChat one with an extension.
    resp = await media.client.post("/v1/media", data=image(magic))
    assert resp.status == 200, await resp.text()
    kept = media.sim.media.items[(await resp.json())["media_id"]]
    assert kept.received_filename is not None
    assert kept.received_filename.endswith(f".{ext}")


async def test_the_same_bytes_twice_make_one_wechat_upload(media: Media) -> None:
    data = image()
    first = await (await media.client.post("/v1/media", data=data)).json()
    second = await (await media.client.post("/v1/media", data=data)).json()
    assert second["media_id"] == first["media_id"]
    assert (first["reused"], second["reused"]) == (False, True)
    assert media.uploads() == 1


async def test_simultaneous_uploads_of_one_new_image_make_one_wechat_upload(media: Media) -> None:
    data = image(size=200_000)
    answers = await asyncio.gather(*(media.client.post("/v1/media", data=data) for _ in range(8)))
    ids = {(await a.json())["media_id"] for a in answers}
    assert len(ids) == 1
    assert media.uploads() == 1


async def test_near_expiry_the_same_bytes_are_uploaded_again(media: Media) -> None:
    data = image()
    first = await (await media.client.post("/v1/media", data=data)).json()
    margin_s = media.settings.media_reuse_margin_h * 3600
    media.sim.clock.advance(3 * 86400 - margin_s - 60)
    still = await (await media.client.post("/v1/media", data=data)).json()
    assert still["media_id"] == first["media_id"]
    media.sim.clock.advance(120)
    renewed = await (await media.client.post("/v1/media", data=data)).json()
    assert renewed["reused"] is False
    assert renewed["media_id"] != first["media_id"]
    assert renewed["created_at"] == int(media.sim.now())
    assert media.uploads() == 2


async def test_different_bytes_are_different_uploads(media: Media) -> None:
    one = await (await media.client.post("/v1/media", data=image())).json()
    two = await (await media.client.post("/v1/media", data=image())).json()
    assert one["media_id"] != two["media_id"]
    assert media.uploads() == 2


@pytest.mark.parametrize(
    "fault",
    [Fault(errcode=-1), Fault(status=503), Fault(drop=True), Fault(accept_then_drop=True)],
    ids=["busy", "http503", "dropped", "accepted-then-dropped"],
)
async def test_transient_upload_failures_are_retried(media: Media, fault: Fault) -> None:
    media.sim.faults.add(FaultRule(path=UPLOAD, sequence=[fault]))
    data = image()
    resp = await media.client.post("/v1/media", data=data)
    assert resp.status == 200, await resp.text()
    got = await media.client.get(f"/v1/media/{(await resp.json())['media_id']}")
    assert await got.read() == data


async def test_wechat_refusing_the_type_is_a_clear_error(media: Media) -> None:
    media.sim.faults.add(FaultRule(path=UPLOAD, sequence=[Fault(errcode=40004)]))
    resp = await media.client.post("/v1/media", data=image())
    assert resp.status == 422
    body = await resp.json()
    assert (body["error"], body["errcode"], body["retryable"]) == ("wechat_refused", 40004, False)


async def test_wechat_refusing_the_size_is_too_large(media: Media) -> None:
    media.sim.faults.add(FaultRule(path=UPLOAD, sequence=[Fault(errcode=45001)]))
    resp = await media.client.post("/v1/media", data=image())
    assert resp.status == 413
    body = await resp.json()
    assert (body["error"], body["errcode"]) == ("too_large", 45001)


async def test_an_upload_failing_past_the_deadline_is_a_retryable_upstream_error(
    make_media: MakeMedia,
) -> None:
    media = await make_media(media_upstream_deadline_s=0.3)
    media.sim.faults.add(FaultRule(path=UPLOAD, rate=1.0, outcomes=[Fault(status=500)], seed=3))
    data = image()
    resp = await media.client.post("/v1/media", data=data)
    assert resp.status == 502
    body = await resp.json()
    assert (body["error"], body["retryable"]) == ("upstream_error", True)
    # Nothing was remembered: once WeChat is back, the same bytes are uploaded.
    media.sim.faults.clear()
    again = await media.client.post("/v1/media", data=data)
    assert (await again.json())["reused"] is False
