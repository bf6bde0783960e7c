"""``/v1/assets/{name}``: named images, and a media_id for each that is valid now."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import msgspec
import structlog
from aiohttp import web

from libs.common.keys import STORE
from services.media import metrics, records
from services.media.assets import AssetDir, check_name
from services.media.errors import AssetsDisabled, MediaError
from services.media.handlers.body import receive_upload
from services.media.handlers.media import (
    check_media_id,
    counted_upload,
    json_response,
    upload_answer,
)
from services.media.intake import Intake
from services.media.keys import ASSETS, SETTINGS, UPLOADER
from services.media.uploads import obtain

log = structlog.get_logger(__name__)


class AssetAnswer(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    sha256: str
    size: int
    content_type: str


def _assets(request: web.Request) -> AssetDir:
    found = request.app.get(ASSETS)
    if found is None:
        raise AssetsDisabled("the asset API is off: set WXKF_ASSETS_DIR to a directory")
    return found


async def put(request: web.Request) -> web.Response:
    # Stores the bytes only: the first media_id request uploads them (and is counted there).
    with _counted("put"):
        assets = _assets(request)
        name = check_name(request.match_info["name"])
        with await receive_upload(request, request.app[SETTINGS]) as intake:
            metrics.BYTES.labels("client_in").inc(intake.size)
            stored = await asyncio.to_thread(assets.put, name, intake)
        log.info("media.asset_stored", asset=name, size=stored.size)
        return json_response(
            AssetAnswer(
                name=name, sha256=stored.sha256, size=stored.size, content_type=stored.kind.mime
            )
        )


async def media_id(request: web.Request) -> web.Response:
    """A media_id valid now for the asset; ``?refused=<id>`` when WeChat just refused that id.

    Counted among the uploads (``wxkf_media_uploads_total``) like ``POST /v1/media``: reused,
    uploaded, or the error's code.
    """
    with _counted("media_id"), counted_upload():
        assets = _assets(request)
        name = check_name(request.match_info["name"])
        asset = await asyncio.to_thread(assets.describe, name)
        refused = request.query.get("refused")
        if refused:
            dropped = await records.forget_refused(
                request.app[STORE], asset.sha256, check_media_id(refused)
            )
            log.info("media.asset_id_refused", asset=name, dropped=dropped)

        async def load() -> Intake:
            return await asyncio.to_thread(assets.load, name)

        record, reused = await obtain(request.app[UPLOADER], asset.sha256, load)
        return upload_answer(record, reused=reused)


async def get(request: web.Request) -> web.StreamResponse:
    with _counted("get"):
        assets = _assets(request)
        name = check_name(request.match_info["name"])
        asset = await asyncio.to_thread(assets.describe, name)
        return web.FileResponse(assets.directory / name, headers={"Content-Type": asset.kind.mime})


async def delete(request: web.Request) -> web.Response:
    with _counted("delete"):
        name = check_name(request.match_info["name"])
        await asyncio.to_thread(_assets(request).delete, name)
        log.info("media.asset_deleted", asset=name)
        return web.Response(status=204)


@contextlib.contextmanager
def _counted(op: str) -> Iterator[None]:
    """Count one asset operation by its outcome (``ok`` or the error's code)."""
    try:
        yield
    except MediaError as exc:
        metrics.ASSETS.labels(op, exc.code).inc()
        raise
    except BaseException:
        metrics.ASSETS.labels(op, "error").inc()
        raise
    metrics.ASSETS.labels(op, "ok").inc()
