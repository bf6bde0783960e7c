"""libs/common/media_client.py against the real media service (what the sender calls)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from libs.common.media_client import AssetNotFound, MediaClient, MediaServiceError
from services.simulator.faults import Fault, FaultRule
from tests.integration.media.harness import MakeMedia, Media, image

TOKEN = "client-test-token"


@pytest.fixture
async def served(make_media: MakeMedia, tmp_path: Path) -> Media:
    return await make_media(assets_dir=str(tmp_path / "assets"), internal_token=TOKEN)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def base_url(media: Media) -> str:
    return str(media.client.make_url("")).rstrip("/")


async def test_an_asset_name_resolves_to_a_media_id(
    served: Media, session: aiohttp.ClientSession
) -> None:
    await served.client.put(
        "/v1/assets/welcome.png", data=image(), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    client = MediaClient(session, base_url(served), token=TOKEN)
    ref = await client.asset_media_id("welcome.png")
    assert ref.media_id in served.sim.media.items
    assert ref.expires_at == ref.created_at + 3 * 86400
    again = await client.asset_media_id("welcome.png")
    assert (again.media_id, again.reused) == (ref.media_id, True)
    renewed = await client.asset_media_id("welcome.png", refused=ref.media_id)
    assert renewed.media_id != ref.media_id


async def test_an_upload_through_the_client(served: Media, session: aiohttp.ClientSession) -> None:
    client = MediaClient(session, base_url(served), token=TOKEN)
    data = image()
    ref = await client.upload(data, filename="anything.bin")
    assert served.sim.media.items[ref.media_id].data == data


async def test_a_missing_asset_is_a_typed_permanent_error(
    served: Media, session: aiohttp.ClientSession
) -> None:
    client = MediaClient(session, base_url(served), token=TOKEN)
    with pytest.raises(AssetNotFound) as caught:
        await client.asset_media_id("nope.png")
    assert (caught.value.code, caught.value.status, caught.value.retryable) == (
        "asset_not_found",
        404,
        False,
    )


async def test_a_wrong_token_is_a_permanent_error(
    served: Media, session: aiohttp.ClientSession
) -> None:
    client = MediaClient(session, base_url(served), token="wrong")
    with pytest.raises(MediaServiceError) as caught:
        await client.asset_media_id("welcome.png")
    assert (caught.value.code, caught.value.retryable) == ("invalid_token", False)


async def test_an_unreachable_service_is_retryable(
    session: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    client = MediaClient(session, f"http://127.0.0.1:{unused_tcp_port}", timeout_s=2.0)
    with pytest.raises(MediaServiceError) as caught:
        await client.asset_media_id("welcome.png")
    assert (caught.value.code, caught.value.retryable, caught.value.status) == (
        "unreachable",
        True,
        None,
    )


async def test_wechat_being_down_is_retryable_through_the_client(
    make_media: MakeMedia, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    media = await make_media(assets_dir=str(tmp_path / "a"), media_upstream_deadline_s=0.2)
    await media.client.put("/v1/assets/x.png", data=image())
    media.sim.faults.add(FaultRule(path="*", rate=1.0, outcomes=[Fault(errcode=-1)], seed=1))
    client = MediaClient(session, base_url(media))
    with pytest.raises(MediaServiceError) as caught:
        await client.asset_media_id("x.png")
    assert (caught.value.code, caught.value.errcode, caught.value.retryable) == (
        "upstream_error",
        -1,
        True,
    )
