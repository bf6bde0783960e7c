"""``POST /v1/media`` (upload, or reuse by hash) and ``GET /v1/media/{media_id}`` (stream)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator

import aiohttp
import msgspec
import structlog
from aiohttp import web

from libs.common.keys import STORE
from libs.common.wechat.api import MediaDownload
from libs.common.wechat.apierrors import WeChatApiError
from services.media import metrics, records
from services.media.cache import DiskCache
from services.media.errors import BadMediaId, MediaError, MediaExpired, MediaNotFound
from services.media.handlers.body import receive_upload
from services.media.intake import Intake
from services.media.keys import CACHE, CLOCK, SETTINGS, UPLOADER, WECHAT
from services.media.records import MediaRecord
from services.media.uploads import obtain

log = structlog.get_logger(__name__)

_MEDIA_ID = re.compile(r"[A-Za-z0-9_\-.=@]{1,256}")
_WRITE_BUFFER = 1024 * 1024


class MediaAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What an upload (or an asset's media_id) answers."""

    media_id: str
    created_at: float
    expires_at: float
    sha256: str
    size: int
    content_type: str
    reused: bool

    @classmethod
    def of(cls, record: MediaRecord, *, reused: bool) -> MediaAnswer:
        return cls(
            media_id=record.media_id,
            created_at=record.created_at,
            expires_at=record.expires_at,
            sha256=record.sha256,
            size=record.size,
            content_type=record.content_type,
            reused=reused,
        )


_encoder = msgspec.json.Encoder()


def json_response(body: msgspec.Struct, *, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(body), content_type="application/json")


async def upload(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    with counted_upload():
        intake = await receive_upload(request, settings)
        metrics.BYTES.labels("client_in").inc(intake.size)

        async def load() -> Intake:
            return intake

        with intake:
            record, reused = await obtain(request.app[UPLOADER], intake.sha256, load)
    return upload_answer(record, reused=reused)


@contextlib.contextmanager
def counted_upload() -> Iterator[None]:
    """Count a request for a media_id (an upload, or an asset's) that failed, by error code.

    Its success is counted by :func:`upload_answer`.
    """
    try:
        yield
    except MediaError as exc:
        metrics.UPLOADS.labels(exc.code).inc()
        raise


def upload_answer(record: MediaRecord, *, reused: bool) -> web.Response:
    """The answer to a request for a media_id, counted as ``reused`` or ``uploaded``."""
    outcome = "reused" if reused else "uploaded"
    metrics.UPLOADS.labels(outcome).inc()
    if not reused:
        metrics.BYTES.labels("wechat_out").inc(record.size)
    # Per reply with an image: counted in metrics; an upload to WeChat logs media.uploaded.
    log.debug("media.upload_answered", outcome=outcome, size=record.size, kind=record.content_type)
    return json_response(MediaAnswer.of(record, reused=reused))


async def download(request: web.Request) -> web.StreamResponse:
    cache = request.app.get(CACHE)
    try:
        media_id = check_media_id(request.match_info["media_id"])
        if cache is not None:
            cached = await _from_cache(request, cache, media_id)
            if cached is not None:
                return cached
        try:
            upstream = await request.app[WECHAT].open(media_id)
        except WeChatApiError as exc:
            # 40007: WeChat does not tell "expired" from "never existed"; our records may.
            raise await _missing(request, media_id, exc) from None
    except MediaError as exc:
        metrics.DOWNLOADS.labels(exc.code).inc()
        raise
    async with upstream:
        return await _stream(request, media_id, upstream, cache)


def check_media_id(media_id: str) -> str:
    if not _MEDIA_ID.fullmatch(media_id):
        raise BadMediaId(f"not a media_id: {media_id[:64]!r}")
    return media_id


async def _missing(request: web.Request, media_id: str, exc: WeChatApiError) -> MediaError:
    record = await records.by_id(request.app[STORE], media_id)
    if record is not None and record.expired(request.app[CLOCK]()):
        return _expired(media_id, exc.errcode)
    return MediaNotFound(
        f"WeChat does not know this media_id (expired or never issued): {exc.errmsg}",
        errcode=exc.errcode,
    )


def _expired(media_id: str, errcode: int) -> MediaExpired:
    return MediaExpired(f"media {media_id[:16]}… expired after WeChat's 3 days", errcode=errcode)


async def _from_cache(
    request: web.Request, cache: DiskCache, media_id: str
) -> web.StreamResponse | None:
    entry = cache.get(media_id)
    if entry is None:
        metrics.CACHE_MISSES.inc()
        return None
    record = await records.by_id(request.app[STORE], media_id)
    if record is not None and record.expired(request.app[CLOCK]()):
        cache.forget(media_id)
        raise _expired(media_id, 40007)
    metrics.CACHE_HITS.inc()
    metrics.DOWNLOADS.labels("cached").inc()
    metrics.BYTES.labels("client_out").inc(entry.size)
    return web.FileResponse(
        entry.path,
        headers={
            "Content-Type": entry.content_type,
            "Content-Disposition": f'attachment; filename="{media_id}.{entry.ext}"',
            "Cache-Control": "no-cache, must-revalidate",
        },
    )


async def _stream(
    request: web.Request, media_id: str, upstream: MediaDownload, cache: DiskCache | None
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": upstream.content_type,
            "Content-Disposition": upstream.content_disposition
            or f'attachment; filename="{media_id}"',
            "Cache-Control": "no-cache, must-revalidate",
        }
    )
    length = upstream.content_length
    if length is not None:
        resp.content_length = length
    if request.transport is not None:
        # Room for a few upstream chunks while the client reads: fewer stalls on each side.
        request.transport.set_write_buffer_limits(high=_WRITE_BUFFER)
    await resp.prepare(request)
    # Opened once the answer has started, so that every way out below removes a partial file.
    writer = cache.writer(media_id, upstream.content_type, length) if cache is not None else None
    sent = 0
    chunks = upstream.chunks()
    try:
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The status line is gone already: all that is left is to cut the connection,
                # so the client sees a short body (its Content-Length says so) rather than a
                # false success.
                metrics.DOWNLOADS.labels("upstream_broken").inc()
                log.warning(
                    "media.download_broken", sent=sent, length=length, error=type(exc).__name__
                )
                if request.transport is not None:
                    request.transport.close()
                return resp
            if writer is not None:
                writer.write(chunk)
            await resp.write(chunk)
            sent += len(chunk)
        if writer is not None:
            # Kept only when every byte arrived (commit checks); else the partial file goes.
            writer.commit()
            writer = None
    except (ConnectionResetError, asyncio.CancelledError) as exc:
        # The client went away (aiohttp may cancel the handler for it) or the service is
        # stopping: nothing more to answer, nothing half-written to keep.
        metrics.DOWNLOADS.labels("abandoned").inc()
        log.info("media.download_abandoned", sent=sent, length=length)
        if isinstance(exc, asyncio.CancelledError):
            raise
        return resp
    finally:
        metrics.BYTES.labels("client_out").inc(sent)
        metrics.BYTES.labels("wechat_in").inc(sent)
        if writer is not None:
            writer.abort()  # broken off: nothing half-written is kept
    metrics.DOWNLOADS.labels("ok").inc()
    await resp.write_eof()
    return resp
