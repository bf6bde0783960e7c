"""Assets: named images on a directory, and a media_id for each that is valid now."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.integration.media.harness import GIF_MAGIC, JPEG_MAGIC, MakeMedia, Media, image


@pytest.fixture
async def assets(make_media: MakeMedia, tmp_path: Path) -> Media:
    return await make_media(assets_dir=str(tmp_path / "assets"))


async def media_id_of(media: Media, name: str, **params: str) -> dict[str, object]:
    resp = await media.client.get(f"/v1/assets/{name}/media_id", params=params)
    assert resp.status == 200, await resp.text()
    body: dict[str, object] = await resp.json()
    return body


async def test_an_asset_is_stored_and_resolved_to_a_media_id(assets: Media, tmp_path: Path) -> None:
    data = image(JPEG_MAGIC, size=30_000)
    put = await assets.client.put("/v1/assets/welcome.jpg", data=data)
    assert put.status == 200, await put.text()
    assert (await put.json())["content_type"] == "image/jpeg"
    assert (tmp_path / "assets" / "welcome.jpg").read_bytes() == data
    assert assets.uploads() == 0  # uploaded when first needed, not before

    first = await media_id_of(assets, "welcome.jpg")
    again = await media_id_of(assets, "welcome.jpg")
    assert again["media_id"] == first["media_id"]
    assert (first["reused"], again["reused"]) == (False, True)
    assert assets.uploads() == 1
    got = await assets.client.get(f"/v1/media/{first['media_id']}")
    assert await got.read() == data


async def test_an_asset_near_expiry_gets_a_new_media_id(assets: Media) -> None:
    await assets.client.put("/v1/assets/banner", data=image())
    first = await media_id_of(assets, "banner")
    margin_s = assets.settings.media_reuse_margin_h * 3600
    assets.sim.clock.advance(3 * 86400 - margin_s + 1)
    renewed = await media_id_of(assets, "banner")
    assert renewed["media_id"] != first["media_id"]
    assert float(str(renewed["expires_at"])) - assets.sim.now() == 3 * 86400
    assert assets.uploads() == 2


async def test_a_media_id_wechat_refused_is_replaced_once(assets: Media) -> None:
    await assets.client.put("/v1/assets/card.png", data=image())
    first = await media_id_of(assets, "card.png")
    replaced = await media_id_of(assets, "card.png", refused=str(first["media_id"]))
    assert replaced["media_id"] != first["media_id"]
    # A second sender reporting the same refused id gets the replacement, not a third upload.
    same = await media_id_of(assets, "card.png", refused=str(first["media_id"]))
    assert same["media_id"] == replaced["media_id"]
    assert assets.uploads() == 2


async def test_replacing_an_asset_s_bytes_changes_its_media_id(assets: Media) -> None:
    await assets.client.put("/v1/assets/logo", data=image())
    first = await media_id_of(assets, "logo")
    await assets.client.put("/v1/assets/logo", data=image(GIF_MAGIC))
    second = await media_id_of(assets, "logo")
    assert second["media_id"] != first["media_id"]
    assert second["content_type"] == "image/gif"


async def test_two_names_for_the_same_bytes_share_one_upload(assets: Media) -> None:
    data = image()
    await assets.client.put("/v1/assets/a", data=data)
    await assets.client.put("/v1/assets/b", data=data)
    a, b = await media_id_of(assets, "a"), await media_id_of(assets, "b")
    assert a["media_id"] == b["media_id"]
    assert assets.uploads() == 1


async def test_a_file_dropped_into_the_directory_is_an_asset(assets: Media, tmp_path: Path) -> None:
    data = image()
    (tmp_path / "assets" / "dropped.png").write_bytes(data)
    body = await media_id_of(assets, "dropped.png")
    got = await assets.client.get(f"/v1/media/{body['media_id']}")
    assert await got.read() == data


async def test_an_asset_can_be_read_back_and_deleted(assets: Media) -> None:
    data = image(size=5000)
    await assets.client.put("/v1/assets/tmp.png", data=data)
    got = await assets.client.get("/v1/assets/tmp.png")
    assert got.headers["Content-Type"] == "image/png"
    assert await got.read() == data
    assert (await assets.client.delete("/v1/assets/tmp.png")).status == 204
    gone = await assets.client.get("/v1/assets/tmp.png/media_id")
    assert gone.status == 404
    assert (await gone.json())["error"] == "asset_not_found"
    assert (await assets.client.delete("/v1/assets/tmp.png")).status == 404


async def test_a_multipart_put_works_too(assets: Media) -> None:
    form = aiohttp.FormData()
    form.add_field("media", image(), filename="whatever.bin")
    assert (await assets.client.put("/v1/assets/form.png", data=form)).status == 200


async def test_an_unknown_asset_is_not_found(assets: Media) -> None:
    resp = await assets.client.get("/v1/assets/nothing.png/media_id")
    assert resp.status == 404
    assert (await resp.json())["error"] == "asset_not_found"


@pytest.mark.parametrize("name", [".hidden", "a..b", "x" * 129, "sp ace", "semi;colon", "-dash"])
async def test_bad_asset_names_are_refused(assets: Media, name: str) -> None:
    resp = await assets.client.put(f"/v1/assets/{name}", data=image())
    assert resp.status == 400
    assert (await resp.json())["error"] == "bad_asset_name"


async def test_a_name_with_a_slash_never_reaches_the_directory(assets: Media) -> None:
    resp = await assets.client.put("/v1/assets/..%2Fescape.png", data=image())
    assert resp.status in (400, 404)
    assert not (assets.tmp / "escape.png").exists()


async def test_an_asset_that_is_not_an_image_is_refused(assets: Media, tmp_path: Path) -> None:
    put = await assets.client.put("/v1/assets/doc.png", data=b"%PDF-1.4 not an image at all")
    assert put.status == 415
    assert not (tmp_path / "assets" / "doc.png").exists()
    (tmp_path / "assets" / "dropped.png").write_bytes(b"GIF8 broken header and more")
    resp = await assets.client.get("/v1/assets/dropped.png/media_id")
    assert resp.status == 415
    assert (await resp.json())["error"] == "not_an_image"


async def test_a_refused_put_keeps_the_previous_bytes(assets: Media, tmp_path: Path) -> None:
    data = image()
    await assets.client.put("/v1/assets/keep.png", data=data)
    resp = await assets.client.put("/v1/assets/keep.png", data=b"not an image, not at all")
    assert resp.status == 415
    assert (tmp_path / "assets" / "keep.png").read_bytes() == data


async def test_the_asset_api_is_off_without_a_directory(media: Media) -> None:
    resp = await media.client.get("/v1/assets/welcome.png/media_id")
    assert resp.status == 404
    body = await resp.json()
    assert body["error"] == "assets_disabled"
    assert "WXKF_ASSETS_DIR" in body["message"]


async def test_a_malformed_refused_id_is_refused(assets: Media) -> None:
    await assets.client.put("/v1/assets/x.png", data=image())
    resp = await assets.client.get("/v1/assets/x.png/media_id", params={"refused": "a b/c"})
    assert resp.status == 400
    assert (await resp.json())["error"] == "bad_media_id"
    assert assets.uploads() == 0


async def test_an_oversize_asset_is_refused_and_not_stored(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    media = await make_media(assets_dir=str(tmp_path / "assets"), media_max_bytes=1000)
    resp = await media.client.put("/v1/assets/big.png", data=image(size=1001))
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"
    assert not (tmp_path / "assets" / "big.png").exists()
