"""Temporary media as WeChat keeps it (WECHAT.md §9): images only, by magic bytes, 3 days.

An upload's checks, in order: no bytes 41005; over the size limit 45001; a file name without
an extension 40005 "invalid file type" (WeChat refuses such files; WECHAT.md gives no errcode
for it, so the simulator answers with WeChat's global code of that name); bytes that are not
JPG, PNG or GIF 40004. The name an upload came with is kept with the media
(:attr:`Media.received_filename`) for tests to look at; downloads are named after the media_id.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from services.simulator.config import SimConfig
from services.simulator.errors import ApiError

ImageKind = Literal["jpeg", "png", "gif"]

CONTENT_TYPES: dict[ImageKind, str] = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif"}
EXTENSIONS: dict[ImageKind, str] = {"jpeg": "jpg", "png": "png", "gif": "gif"}


def sniff(data: bytes) -> ImageKind | None:
    """What the bytes are, from their signature (the filename and Content-Type can lie)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    return None


def has_extension(filename: str) -> bool:
    """``a.jpg`` has one; ``a``, ``a.`` and ``.jpg`` (a hidden file's name) do not."""
    return bool(PurePosixPath(filename).suffix)


@dataclass(frozen=True, slots=True)
class Media:
    media_id: str
    data: bytes
    kind: ImageKind
    created_at: float
    expires_at: float
    received_filename: str | None = None
    """The file name of the upload's multipart part; None for an image a user sent."""

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.kind]

    @property
    def filename(self) -> str:
        return f"{self.media_id}.{EXTENSIONS[self.kind]}"


class MediaStore:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.items: dict[str, Media] = {}

    def put(self, data: bytes, now: float, *, filename: str | None = None) -> Media:
        """Keep ``data``; ``filename`` is the upload's (None: an image a user sent)."""
        if not data:
            raise ApiError(41005)
        if len(data) > self.config.media_max_bytes:
            raise ApiError(45001)
        if filename is not None and not has_extension(filename):
            raise ApiError(40005, f"invalid file type: {filename[:64]!r} has no extension")
        kind = sniff(data)
        if kind is None:
            raise ApiError(40004)
        for gone in [m for m, item in self.items.items() if item.expires_at <= now]:
            del self.items[gone]
        media = Media(
            media_id=secrets.token_urlsafe(48),
            data=data,
            kind=kind,
            created_at=now,
            expires_at=now + self.config.media_ttl_s,
            received_filename=filename,
        )
        self.items[media.media_id] = media
        return media

    def get(self, media_id: str | None, now: float) -> Media:
        """The live media for ``media_id``; 40007 when unknown or past its 3 days."""
        item = self.items.get(media_id or "")
        if item is None or now >= item.expires_at:
            raise ApiError(40007)
        return item
