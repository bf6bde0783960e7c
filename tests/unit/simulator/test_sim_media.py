"""Temporary media upload and download (WECHAT.md §9)."""

from __future__ import annotations

import aiohttp
import pytest
from sim_helpers import GIF, JPEG, PNG, Client

from services.simulator.clock import SimClock
from services.simulator.config import SimConfig
from services.simulator.state import SimState

UPLOAD = "/cgi-bin/media/upload"
GET = "/cgi-bin/media/get"


def form(
    data: bytes, *, name: str = "media", filename: str | None = "a.jpg"
) -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(data, {"Content-Type": "image/jpeg"})
    disposition = {"name": name} if filename is None else {"name": name, "filename": filename}
    part.set_content_disposition("form-data", **disposition)
    return writer


async def upload(
    client: Client, token: str | None, data: aiohttp.MultipartWriter | bytes, **q: str
) -> dict:
    params = {"type": "image", **q}
    if token is not None:
        params["access_token"] = token
    resp = await client.post(UPLOAD, params=params, data=data)
    assert resp.status == 200
    return dict(await resp.json(content_type=None))


@pytest.mark.parametrize(
    ("data", "content_type", "ext"),
    [(JPEG, "image/jpeg", "jpg"), (PNG, "image/png", "png"), (GIF, "image/gif", "gif")],
)
async def test_upload_then_get_with_wechats_headers(
    client: Client, token: str, clock: SimClock, data: bytes, content_type: str, ext: str
) -> None:
    answer = await upload(client, token, form(data))
    assert answer["type"] == "image"
    assert answer["created_at"] == int(clock.now())
    assert isinstance(answer["created_at"], int)
    media_id = answer["media_id"]
    resp = await client.get(GET, params={"access_token": token, "media_id": media_id})
    assert resp.status == 200
    assert await resp.read() == data
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["Content-disposition"] == f'attachment; filename="{media_id}.{ext}"'
    assert resp.headers["Cache-Control"] == "no-cache, must-revalidate"
    assert resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["Connection"] == "close"


async def test_large_media_streams_whole(client: Client, token: str) -> None:
    data = JPEG + bytes(range(256)) * 6000
    media_id = (await upload(client, token, form(data)))["media_id"]
    resp = await client.get(GET, params={"access_token": token, "media_id": media_id})
    assert await resp.read() == data


async def test_get_by_post_body(client: Client, token: str, state: SimState) -> None:
    media_id = state.upload_media(PNG).media_id
    resp = await client.post(
        GET, params={"access_token": token}, data=b'{"media_id":"' + media_id.encode() + b'"}'
    )
    assert await resp.read() == PNG


async def test_media_expires_after_three_days(
    client: Client, state: SimState, clock: SimClock
) -> None:
    media_id = state.upload_media(JPEG).media_id
    clock.advance(3 * 86400 - 1)
    token = state.token_for_tests()
    resp = await client.get(GET, params={"access_token": token, "media_id": media_id})
    assert await resp.read() == JPEG
    clock.advance(1)
    resp = await client.get(GET, params={"access_token": token, "media_id": media_id})
    assert resp.headers["Content-Type"] == "application/json; encoding=utf-8"
    assert (await resp.json(content_type=None))["errcode"] == 40007


async def test_get_errors(client: Client, token: str) -> None:
    for params in ({"access_token": token, "media_id": "nope"}, {"access_token": token}):
        resp = await client.get(GET, params=params)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json; encoding=utf-8"
        answer = await resp.json(content_type=None)
        assert answer["errcode"] == 40007
        assert answer["errmsg"].startswith("invalid media_id rid: ")
    resp = await client.get(GET, params={"media_id": "x"})
    assert (await resp.json(content_type=None))["errcode"] == 41001


async def test_upload_refusals(client: Client, token: str, state: SimState) -> None:
    assert (await upload(client, token, form(b"GIF8 not really")))["errcode"] == 40004
    assert (await upload(client, token, form(JPEG), type="voice"))["errcode"] == 40004
    assert (await upload(client, token, form(JPEG), type=""))["errcode"] == 40004
    assert (await upload(client, token, form(JPEG, name="file")))["errcode"] == 41005
    assert (await upload(client, token, form(JPEG, filename=None)))["errcode"] == 41005
    assert (await upload(client, token, JPEG))["errcode"] == 41005
    assert (await upload(client, token, form(b"")))["errcode"] == 41005
    assert (await upload(client, None, form(JPEG)))["errcode"] == 41001
    assert state.media.items == {}


@pytest.mark.parametrize("filename", ["photo", "photo.", ".jpg"])
async def test_an_upload_whose_file_name_has_no_extension_is_refused(
    client: Client, token: str, state: SimState, filename: str
) -> None:
    answer = await upload(client, token, form(JPEG, filename=filename))
    assert answer["errcode"] == 40005
    assert answer["errmsg"].startswith("invalid file type: ")
    assert state.media.items == {}


async def test_the_file_name_an_upload_came_with_is_kept(
    client: Client, token: str, state: SimState
) -> None:
    # The name's extension need not match the bytes: WeChat judges the bytes.
    media_id = (await upload(client, token, form(JPEG, filename="holiday.png")))["media_id"]
    assert state.media.items[media_id].received_filename == "holiday.png"
    assert state.upload_media(PNG).received_filename is None  # an image a user sent


@pytest.mark.parametrize("config", [SimConfig(media_max_bytes=1000)])
async def test_upload_size_limit(client: Client, token: str, state: SimState) -> None:
    assert "media_id" in await upload(client, token, form(JPEG + b"\x00" * (1000 - len(JPEG))))
    answer = await upload(client, token, form(JPEG + b"\x00" * (1001 - len(JPEG))))
    assert answer["errcode"] == 45001
    assert len(state.media.items) == 1


async def test_default_size_limit_is_2_mb(client: Client, token: str) -> None:
    answer = await upload(client, token, form(JPEG + b"\x00" * (2 * 1024 * 1024)))
    assert answer["errcode"] == 45001


async def test_registered_inbound_image_is_downloadable(client: Client, token: str) -> None:
    resp = await client.post("/sim/media", data=PNG)
    registered = await resp.json()
    pic = await client.get(
        registered["pic_url"].split(":", 2)[2].split("/", 1)[1].join("/"[:0]) or ""
    )
    del pic
    resp = await client.get(GET, params={"access_token": token, "media_id": registered["media_id"]})
    assert await resp.read() == PNG
    pic_path = "/" + registered["pic_url"].split("/", 3)[3]
    assert pic_path == f"/sim/pic/{registered['media_id']}"
    assert await (await client.get(pic_path)).read() == PNG
    bad = await client.post("/sim/media", data=b"text")
    assert bad.status == 400
    assert (await bad.json())["error"] == "invalid_media"


async def test_malformed_multipart_is_media_missing(client: Client, token: str) -> None:
    resp = await client.post(
        UPLOAD,
        params={"type": "image", "access_token": token},
        data=b"garbage without boundaries",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert (await resp.json(content_type=None))["errcode"] == 41005
