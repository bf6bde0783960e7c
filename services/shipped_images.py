"""The two images the shipped rules name (``size-chart``, ``returns-card``), drawn at start.

They are written into the media service's asset directory, so the demo and ``wxkf up`` need no
binary files in the repository; ``tint`` makes the bytes differ between runs that share a Redis
(the media service remembers media ids by content hash).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

RGB = tuple[int, int, int]

WHITE: RGB = (255, 255, 255)
GREY: RGB = (160, 160, 160)
GREEN: RGB = (7, 193, 96)


def png(width: int, height: int, pixel: Callable[[int, int], RGB]) -> bytes:
    """A truecolour PNG of ``width`` × ``height`` whose pixel (x, y) is ``pixel(x, y)``."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type 0: the row as it is
        for x in range(width):
            rows.extend(pixel(x, y))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def size_chart(tint: int = 0) -> bytes:
    """A table of 5 columns and 6 rows, its header row in green."""

    def pixel(x: int, y: int) -> RGB:
        if x % 48 == 0 or y % 24 == 0 or x == 239 or y == 143:
            return GREY
        if y < 24:
            return (GREEN[0], GREEN[1], (GREEN[2] + tint) % 256)
        return WHITE

    return png(240, 144, pixel)


def returns_card(tint: int = 0) -> bytes:
    """A card cover: a green band over white, with a box in the middle."""

    def pixel(x: int, y: int) -> RGB:
        if y < 40:
            return (GREEN[0], GREEN[1], (GREEN[2] + tint) % 256)
        if 80 <= x < 160 and 56 <= y < 104:
            return GREY
        return WHITE

    return png(240, 120, pixel)


ASSETS: dict[str, Callable[[int], bytes]] = {
    "size-chart": size_chart,
    "returns-card": returns_card,
}


def write_assets(directory: Path, *, tint: int = 0) -> list[Path]:
    """Write every image the shipped rules name into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in ASSETS.items():
        path = directory / name
        path.write_bytes(draw(tint))
        written.append(path)
    return written
