"""The media service's metrics, read from real requests through the app against the simulator.

The registry is process-global (every test, and the memory and Redis runs of each, count into
it): each test compares the samples after its requests with those before them.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from services.simulator.faults import Fault, FaultRule
from tests.integration.media.harness import GIF_MAGIC, JPEG_MAGIC, MakeMedia, Media, image
from tests.support.metrics import sample

UPLOAD = "/cgi-bin/media/upload"
GET = "/cgi-bin/media/get"
LATENCY = "wxkf_wechat_api_call_duration_seconds_count"

SampleKey = tuple[str, frozenset[tuple[str, str]]]


MEDIA_METRICS = [  # every metric these tests read
    "wxkf_media_bytes_total",
    "wxkf_media_downloads_total",
    "wxkf_media_uploads_total",
    "wxkf_media_cache_hits_total",
    "wxkf_media_cache_misses_total",
    "wxkf_wechat_api_call_duration_seconds_count",
]


def _samples() -> dict[SampleKey, float]:
    # The media service's metrics only: collecting the whole registry of a long test run
    # holds the event loop for tenths of a second.
    return {
        (found.name, frozenset(found.labels.items())): found.value
        for metric in REGISTRY.restricted_registry(MEDIA_METRICS).collect()
        for found in metric.samples
    }


class Deltas:
    """What the registry's samples moved by since this object was made."""

    def __init__(self) -> None:
        self._before = _samples()

    def of(self, name: str, **labels: str) -> float:
        now = sample(name, **labels)
        return now - self._before.get((name, frozenset(labels.items())), 0.0)

    def by(self, name: str, label: str) -> dict[str, float]:
        """Every sample of ``name`` that moved, by the value of its ``label``."""
        moved: dict[str, float] = {}
        for (found, labels), value in _samples().items():
            if found != name:
                continue
            delta = value - self._before.get((found, labels), 0.0)
            if delta:
                moved[dict(labels)[label]] = delta
        return moved


async def test_uploads_are_counted_by_outcome_with_their_bytes_and_wechat_s_latency(
    media: Media,
) -> None:
    deltas = Deltas()
    new, refused = image(size=10_000), image(JPEG_MAGIC, size=7_000)
    assert (await media.client.post("/v1/media", data=new)).status == 200
    assert (await media.client.post("/v1/media", data=new)).status == 200
    assert (await media.client.post("/v1/media", data=b"plain text, not an image")).status == 415
    media.sim.faults.add(FaultRule(path=UPLOAD, sequence=[Fault(errcode=40004)]))
    assert (await media.client.post("/v1/media", data=refused)).status == 422

    assert deltas.by("wxkf_media_uploads_total", "outcome") == {
        "uploaded": 1,
        "reused": 1,
        "not_an_image": 1,
        "wechat_refused": 1,
    }
    # Received: the three images (not the text, refused as its first bytes came in).
    assert deltas.of("wxkf_media_bytes_total", direction="client_in") == 2 * len(new) + len(refused)
    assert deltas.of("wxkf_media_bytes_total", direction="wechat_out") == len(new)
    # One observation per answer WeChat gave: the upload and the refusal.
    assert media.sim.stats.total(UPLOAD) == 2
    assert deltas.of(LATENCY, service="media", api="upload_media") == 2


async def test_downloads_are_counted_by_outcome_with_the_cache_and_bytes(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    media = await make_media(media_cache_dir=str(tmp_path / "cache"))
    data = image(GIF_MAGIC, size=50_000)
    media_id = media.sim.upload_media(data).media_id  # an image a user sent
    deltas = Deltas()
    for _ in range(2):
        resp = await media.client.get(f"/v1/media/{media_id}")
        assert await resp.read() == data
    assert (await media.client.get("/v1/media/no-such-id")).status == 404

    assert deltas.by("wxkf_media_downloads_total", "outcome") == {
        "ok": 1,
        "cached": 1,
        "media_not_found": 1,
    }
    assert deltas.of("wxkf_media_cache_misses_total") == 2  # the first download, the unknown id
    assert deltas.of("wxkf_media_cache_hits_total") == 1
    assert deltas.of("wxkf_media_bytes_total", direction="wechat_in") == len(data)
    assert deltas.of("wxkf_media_bytes_total", direction="client_out") == 2 * len(data)
    assert deltas.by("wxkf_media_bytes_total", "direction").keys() == {"wechat_in", "client_out"}
    # WeChat answered twice (the media, then 40007); the cached answer did not ask it.
    assert media.downloads() == 2
    assert deltas.of(LATENCY, service="media", api="get_media") == 2


async def test_asset_media_ids_count_as_uploads_by_outcome(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    assets = await make_media(assets_dir=str(tmp_path / "assets"))
    data = image(size=20_000)
    deltas = Deltas()
    assert (await assets.client.put("/v1/assets/card.png", data=data)).status == 200
    # Storing an asset receives its bytes and uploads nothing.
    assert deltas.by("wxkf_media_uploads_total", "outcome") == {}
    assert deltas.of("wxkf_media_bytes_total", direction="client_in") == len(data)

    first = await (await assets.client.get("/v1/assets/card.png/media_id")).json()
    again = await (await assets.client.get("/v1/assets/card.png/media_id")).json()
    renewed = await assets.client.get(
        "/v1/assets/card.png/media_id", params={"refused": first["media_id"]}
    )
    assert (first["reused"], again["reused"], (await renewed.json())["reused"]) == (
        False,
        True,
        False,
    )

    assert deltas.by("wxkf_media_uploads_total", "outcome") == {"uploaded": 2, "reused": 1}
    assert deltas.of("wxkf_media_bytes_total", direction="wechat_out") == 2 * len(data)
    assert assets.uploads() == 2
    assert deltas.of(LATENCY, service="media", api="upload_media") == 2


async def test_asset_media_id_failures_count_as_uploads_by_error_code(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    assets = await make_media(assets_dir=str(tmp_path / "assets"), media_upstream_deadline_s=0.3)
    for name in ("refused.png", "unreachable.png"):
        assert (await assets.client.put(f"/v1/assets/{name}", data=image())).status == 200
    (tmp_path / "assets" / "dropped.png").write_bytes(b"not an image, copied in by hand")
    deltas = Deltas()

    missing = await assets.client.get("/v1/assets/nothing.png/media_id")
    assert (await missing.json())["error"] == "asset_not_found"
    broken = await assets.client.get("/v1/assets/dropped.png/media_id")
    assert (await broken.json())["error"] == "not_an_image"
    assets.sim.faults.add(FaultRule(path=UPLOAD, sequence=[Fault(errcode=40004)]))
    refused = await assets.client.get("/v1/assets/refused.png/media_id")
    assert (await refused.json())["error"] == "wechat_refused"
    assets.sim.faults.add(FaultRule(path=UPLOAD, rate=1.0, outcomes=[Fault(status=503)], seed=5))
    down = await assets.client.get("/v1/assets/unreachable.png/media_id")
    assert (await down.json())["error"] == "upstream_error"

    assert deltas.by("wxkf_media_uploads_total", "outcome") == {
        "asset_not_found": 1,
        "not_an_image": 1,
        "wechat_refused": 1,
        "upstream_error": 1,
    }
    assert deltas.of("wxkf_media_bytes_total", direction="wechat_out") == 0
    # Every answer WeChat gave was timed: the refusal and each 503 before the deadline.
    assert assets.sim.stats.total(UPLOAD) >= 2
    assert deltas.of(LATENCY, service="media", api="upload_media") == assets.sim.stats.total(UPLOAD)
