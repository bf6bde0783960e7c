"""Test bytes for the media service: images by their signature, bodies in chunks."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff\xe0"
GIF_MAGIC = b"GIF89a"


def image(magic: bytes = PNG_MAGIC, size: int = 4096) -> bytes:
    """Bytes that open with an image signature (all the service and WeChat look at)."""
    return magic + os.urandom(max(0, size - len(magic)))


async def chunked(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
