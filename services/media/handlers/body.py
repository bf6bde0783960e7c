"""An upload's bytes as chunks, from a raw body or from the file part of a multipart form."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web

from services.media.errors import BadMultipart, TooLarge
from services.media.intake import CHUNK, Intake, receive
from services.media.settings import MediaSettings

FILE_FIELDS = ("media", "file")
"""Multipart fields taken as the file (WeChat's own name first); else the first file part."""
_MULTIPART_SLACK = 16 * 1024
"""Room for boundaries and part headers when judging a multipart Content-Length."""


async def receive_upload(request: web.Request, settings: MediaSettings) -> Intake:
    """The request's image, checked, capped and hashed while it streams in."""
    multipart = request.content_type.startswith("multipart/")
    declared = request.content_length
    cap = settings.media_max_bytes
    if declared is not None and declared > cap + (_MULTIPART_SLACK if multipart else 0):
        # Refused before a byte is read: the client said how much is coming.
        raise TooLarge(f"the body ({declared} bytes) is larger than the limit of {cap} bytes")
    if multipart:
        part = await _file_part(request)
        chunks = _part_chunks(part)
        claimed = part.filename or part.headers.get("Content-Type") or ""
    else:
        chunks = request.content.iter_chunked(CHUNK)
        claimed = request.headers.get("Content-Type", "")
    try:
        return await receive(
            chunks,
            max_bytes=cap,
            allowed=settings.allowed_kinds,
            spool_bytes=settings.media_spool_bytes,
            claimed=claimed,
        )
    except ValueError as exc:
        # aiohttp's multipart reader raises ValueError on a malformed body.
        raise BadMultipart(f"the multipart body cannot be read: {exc}") from None


async def _file_part(request: web.Request) -> BodyPartReader:
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise BadMultipart("nested multipart bodies are not accepted")
            if part.name in FILE_FIELDS or part.filename:
                return part
            await part.release()
    except (ValueError, AssertionError) as exc:
        # aiohttp reports a malformed boundary or header this way.
        raise BadMultipart(f"the multipart body cannot be read: {exc}") from None
    raise BadMultipart("the multipart body has no file part (send the image as field 'media')")


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk
