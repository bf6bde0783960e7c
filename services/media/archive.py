"""The archive: every user image (``msg.image``) saved before WeChat forgets it after 3 days.

On only when ``WXKF_ARCHIVE_DIR`` is set; then the service declares and consumes
:data:`~libs.common.topology.MEDIA_ARCHIVE`. Each image is streamed from WeChat into a
temporary file, hashed on the way, and renamed to ``YYYY/MM/DD/<sha256>.<ext>`` (the day of
the user's message, UTC) under the archive directory, so a redelivered event rewrites the same
file. A ``media.archived`` fact then names that path (relative to the directory) and the hash.

Failures go through the bus, never a wait in the consumer: WeChat busy or unreachable →
``Retry``; an id WeChat no longer knows, or an image over the size cap → ``Reject``
(dead-lettered, counted, logged). An image sent to another app than the configured
``WXKF_APPID`` is skipped (acknowledged, counted as ``other_app``, logged), never downloaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import IO

import aiohttp
import msgspec
import structlog

from libs.common.bus import Bus, Delivery, Handler, Reject, Retry, publish_fact
from libs.common.observability.logging import hash_openid
from libs.common.schemas import AnyMessage, ImageReceived, MediaArchived, derived_id
from libs.common.wechat.api import MediaDownload
from libs.common.wechat.apierrors import WeChatApiError
from services.media import metrics
from services.media.errors import UpstreamError
from services.media.sniff import HEAD_BYTES, kind_for_mime, sniff
from services.media.upstream import WeChatMedia

log = structlog.get_logger(__name__)


class Saved(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    """Relative to the archive directory."""
    sha256: str
    size: int
    content_type: str


class Archiver(msgspec.Struct, frozen=True, kw_only=True):
    directory: Path
    wechat: WeChatMedia
    bus: Bus
    max_bytes: int
    appid: str
    """The configured app: its token cannot download another app's media."""


def handler(archiver: Archiver) -> Handler:
    async def handle(msg: AnyMessage, delivery: Delivery) -> None:
        if not isinstance(msg, ImageReceived):
            return
        if msg.appid != archiver.appid:
            # Not ours to download (our token is not that app's): skip it, without a retry
            # or a dead letter that no fix on our side would ever clear.
            metrics.ARCHIVED.labels("other_app").inc()
            log.warning("media.archive_other_app", event_id=msg.id, appid=msg.appid)
            return
        await archive(archiver, msg, delivery)

    return handle


async def archive(archiver: Archiver, msg: ImageReceived, delivery: Delivery) -> None:
    # Per user image: counted in metrics, a line only at debug (as every per-message line).
    log.debug(
        "media.archive_started",
        event_id=msg.id,
        openid=hash_openid(msg.openid),
        attempt=delivery.attempt,
    )
    try:
        # One attempt (the token refresh included): retries go through the bus's delays.
        download = await archiver.wechat.open(msg.media_id, deadline_s=0)
    except WeChatApiError as exc:
        metrics.ARCHIVED.labels("media_gone").inc()
        log.warning("media.archive_gone", event_id=msg.id, errcode=exc.errcode)
        raise Reject(f"WeChat no longer has this image (errcode {exc.errcode})") from None
    except UpstreamError as exc:
        metrics.ARCHIVED.labels("retry" if exc.retryable else "failed").inc()
        if exc.retryable:
            raise Retry(exc.message) from None
        raise Reject(exc.message) from None
    async with download:
        try:
            saved = await _save(archiver, msg, download)
        except (aiohttp.ClientError, TimeoutError) as exc:
            metrics.ARCHIVED.labels("retry").inc()
            raise Retry(f"the download from WeChat broke off: {type(exc).__name__}") from None
    fact = MediaArchived(
        id=derived_id(msg.id, "media.archived"),
        appid=msg.appid,
        openid=msg.openid,
        correlation_id=msg.correlation_id,
        event_id=msg.id,
        media_id=msg.media_id,
        path=saved.path,
        sha256=saved.sha256,
        size=saved.size,
        content_type=saved.content_type,
    )
    await publish_fact(archiver.bus, fact)
    metrics.ARCHIVED.labels("archived").inc()
    metrics.BYTES.labels("archived").inc(saved.size)
    log.debug("media.archived", event_id=msg.id, path=saved.path, size=saved.size)


async def _save(archiver: Archiver, msg: ImageReceived, download: MediaDownload) -> Saved:
    declared = download.content_length
    if declared is not None and declared > archiver.max_bytes:
        metrics.ARCHIVED.labels("too_large").inc()
        raise Reject(f"the image has {declared} bytes, over WXKF_ARCHIVE_MAX_BYTES")
    tmp, out = await asyncio.to_thread(_open_temp, archiver.directory)
    try:
        digest = hashlib.sha256()
        head = b""
        size = 0
        async for chunk in download.chunks():
            size += len(chunk)
            if size > archiver.max_bytes:
                metrics.ARCHIVED.labels("too_large").inc()
                raise Reject(f"the image is over WXKF_ARCHIVE_MAX_BYTES ({archiver.max_bytes})")
            if len(head) < HEAD_BYTES:
                head = (head + chunk)[:HEAD_BYTES]
            digest.update(chunk)
            # On the loop, as the download cache writes: a worker thread per chunk would cost
            # more in hops and in the GIL passed back and forth.
            out.write(chunk)
        sha = digest.hexdigest()
        kind = sniff(head) or kind_for_mime(download.content_type)
        ext = kind.ext if kind is not None else "bin"
        content_type = kind.mime if kind is not None else download.content_type
        day = time.strftime("%Y/%m/%d", time.gmtime(msg.create_time))
        relative = f"{day}/{sha}.{ext}"
        await asyncio.to_thread(_commit, out, tmp, archiver.directory / relative)
    except BaseException:
        await asyncio.to_thread(_discard, out, tmp)
        raise
    return Saved(path=relative, sha256=sha, size=size, content_type=content_type)


def _open_temp(directory: Path) -> tuple[Path, IO[bytes]]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".archive.", suffix=".tmp")
    return Path(name), os.fdopen(fd, "wb")


def _commit(out: IO[bytes], tmp: Path, final: Path) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


def _discard(out: IO[bytes], tmp: Path) -> None:
    if not out.closed:
        out.close()
    tmp.unlink(missing_ok=True)
