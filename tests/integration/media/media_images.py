"""Test images for the media service: bytes that open with an image signature.

The signature is all that the service and WeChat (the simulator) judge an image by.
"""

from __future__ import annotations

import os

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff\xe0"
GIF_MAGIC = b"GIF89a"


def image(magic: bytes = PNG_MAGIC, size: int = 4096) -> bytes:
    return magic + os.urandom(max(0, size - len(magic)))
