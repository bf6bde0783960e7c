"""The internal bearer token: required on /v1/ when configured, never on health or metrics."""

from __future__ import annotations

import pytest

from tests.integration.media.harness import MakeMedia, Media, image

TOKEN = "internal-test-token-1"


@pytest.fixture
async def guarded(make_media: MakeMedia) -> Media:
    return await make_media(internal_token=TOKEN)


async def test_a_request_without_the_token_is_refused(guarded: Media) -> None:
    resp = await guarded.client.post("/v1/media", data=image())
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await resp.json())["error"] == "missing_token"
    assert guarded.uploads() == 0


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}x", "Bearer wrong", f"Bearer {TOKEN[:-1]}"])
async def test_a_request_with_a_wrong_token_is_refused(guarded: Media, header: str) -> None:
    resp = await guarded.client.get("/v1/media/some-id", headers={"Authorization": header})
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_token"
    assert guarded.downloads() == 0


@pytest.mark.parametrize("header", [TOKEN, f"Basic {TOKEN}", "Bearer ", "Bearer"])
async def test_a_malformed_authorization_counts_as_missing(guarded: Media, header: str) -> None:
    resp = await guarded.client.put(
        "/v1/assets/x.png", data=image(), headers={"Authorization": header}
    )
    assert resp.status == 401
    assert (await resp.json())["error"] == "missing_token"


async def test_the_right_token_passes(guarded: Media) -> None:
    resp = await guarded.client.post(
        "/v1/media", data=image(), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_health_and_metrics_are_not_on_the_api_port(guarded: Media, path: str) -> None:
    # They are the internal port's (libs.common.web.internal_app), which needs no token.
    assert (await guarded.client.get(path)).status in (401, 404)


async def test_without_a_configured_token_the_api_is_open(media: Media) -> None:
    assert (await media.client.post("/v1/media", data=image())).status == 200
