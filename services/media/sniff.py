"""What an upload is, judged by its first bytes (never by its name or claimed type)."""

from __future__ import annotations

import msgspec


class Kind(msgspec.Struct, frozen=True, kw_only=True):
    """An image type WeChat accepts as temporary media."""

    name: str
    mime: str
    ext: str
    """The filename extension WeChat needs on the upload (it refuses files without one)."""


JPEG = Kind(name="jpeg", mime="image/jpeg", ext="jpg")
PNG = Kind(name="png", mime="image/png", ext="png")
GIF = Kind(name="gif", mime="image/gif", ext="gif")
KINDS: tuple[Kind, ...] = (JPEG, PNG, GIF)

HEAD_BYTES = 16
"""How many leading bytes :func:`sniff` needs to decide."""

_SIGNATURES: tuple[tuple[bytes, Kind], ...] = (
    (b"\xff\xd8\xff", JPEG),
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"GIF87a", GIF),
    (b"GIF89a", GIF),
)

# Formats people commonly send by mistake, named so that the error says what arrived.
_OTHERS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "riff"),
    (0, b"BM", "bmp"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"%PDF", "pdf"),
    (0, b"PK\x03\x04", "zip"),
    (0, b"<", "text/markup"),
    (0, b"{", "json"),
    (4, b"ftyp", "heic/mp4"),
)


def sniff(head: bytes) -> Kind | None:
    """The image kind whose magic number ``head`` starts with, or None."""
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    return None


def describe(head: bytes) -> str:
    """A short name for what ``head`` looks like, for error messages."""
    kind = sniff(head)
    if kind is not None:
        return kind.name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for offset, magic, name in _OTHERS:
        if head[offset : offset + len(magic)] == magic:
            return name
    return "unknown"


def kind_for_mime(mime: str) -> Kind | None:
    base = mime.split(";")[0].strip().lower()
    return next((k for k in KINDS if k.mime == base), None)
