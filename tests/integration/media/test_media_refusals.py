"""Every bad upload gets a clear, typed error, and nothing reaches WeChat."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.integration.media.harness import GIF_MAGIC, MakeMedia, Media, image


async def refused(resp: aiohttp.ClientResponse, status: int, error: str) -> dict[str, object]:
    assert resp.status == status, await resp.text()
    body: dict[str, object] = await resp.json()
    assert body["error"] == error
    assert body["message"]
    return body


async def test_bytes_that_are_not_an_image_are_refused(media: Media) -> None:
    resp = await media.client.post("/v1/media", data=b"just some text, long enough to judge")
    body = await refused(resp, 415, "not_an_image")
    assert "look like unknown" in str(body["message"])
    assert media.uploads() == 0


async def test_a_disguised_file_is_refused_whatever_its_name(media: Media) -> None:
    form = aiohttp.FormData()
    form.add_field(
        "media", b"%PDF-1.7\n" + b"0" * 500, filename="cat.png", content_type="image/png"
    )
    body = await refused(await media.client.post("/v1/media", data=form), 415, "not_an_image")
    assert "pdf" in str(body["message"])
    assert "cat.png" in str(body["message"])
    assert media.uploads() == 0


async def test_an_image_kind_the_deployment_does_not_accept_is_refused(
    make_media: MakeMedia,
) -> None:
    media = await make_media(media_types="jpeg,png")
    resp = await media.client.post("/v1/media", data=image(GIF_MAGIC))
    await refused(resp, 415, "type_not_allowed")
    assert media.uploads() == 0


async def test_an_empty_body_is_refused(media: Media) -> None:
    await refused(await media.client.post("/v1/media", data=b""), 400, "empty_body")


async def test_a_multipart_body_without_a_file_is_refused(media: Media) -> None:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("note", "no file here")
    form.add_field("other", "still none")
    body = await refused(await media.client.post("/v1/media", data=form), 400, "bad_multipart")
    assert "field 'media'" in str(body["message"])


async def test_a_broken_multipart_body_is_refused(media: Media) -> None:
    resp = await media.client.post(
        "/v1/media",
        data=b"--nope\r\nthis is not a multipart body",
        headers={"Content-Type": "multipart/form-data; boundary=other"},
    )
    await refused(resp, 400, "bad_multipart")


async def test_a_declared_oversize_body_is_refused_before_it_is_read(make_media: MakeMedia) -> None:
    media = await make_media(media_max_bytes=10_000)
    resp = await media.client.post("/v1/media", data=image(size=10_001))
    body = await refused(resp, 413, "too_large")
    assert "10001 bytes" in str(body["message"])
    ok = await media.client.post("/v1/media", data=image(size=10_000))
    assert ok.status == 200
    assert media.uploads() == 1


async def test_an_oversize_stream_is_refused_while_streaming_and_memory_stays_flat(
    make_media: MakeMedia,
) -> None:
    cap = 256 * 1024
    media = await make_media(media_max_bytes=cap)
    offered = 64 * 1024 * 1024
    sent = 0

    async def endless_image() -> AsyncIterator[bytes]:
        # No Content-Length: the service only learns the size by reading.
        nonlocal sent
        chunk = image(size=64 * 1024)
        while sent < offered:
            sent += len(chunk)
            yield chunk

    tracemalloc.start()
    try:
        resp = await media.client.post("/v1/media", data=endless_image())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    await refused(resp, 413, "too_large")
    # The service stopped reading at the cap and closed the connection: the client could not
    # push the whole stream, and nothing near its size was ever held in memory.
    assert sent < offered / 4
    assert peak < 8 * 1024 * 1024
    assert media.uploads() == 0


@pytest.mark.parametrize("field", ["media", "file", "anything"])
async def test_the_file_part_may_have_any_usual_name(media: Media, field: str) -> None:
    form = aiohttp.FormData()
    form.add_field("note", "first a text field")
    form.add_field(field, image(), filename="x", content_type="application/octet-stream")
    assert (await media.client.post("/v1/media", data=form)).status == 200
