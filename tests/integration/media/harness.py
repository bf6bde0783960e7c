"""What the media service's integration tests share: the running service, test images.

Test images are bytes that open with an image signature: all that the service and WeChat
(the simulator) judge an image by.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from libs.common.store import Store
from services.media.settings import MediaSettings
from services.simulator.state import SimState

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff\xe0"
GIF_MAGIC = b"GIF89a"


def image(magic: bytes = PNG_MAGIC, size: int = 4096) -> bytes:
    return magic + os.urandom(max(0, size - len(magic)))


@dataclass
class Media:
    """One running media service, the simulated WeChat behind it, and what they share."""

    client: TestClient[Any, Any]
    sim: SimState
    store: Store
    settings: MediaSettings
    tmp: Path

    def uploads(self) -> int:
        """Uploads WeChat accepted."""
        return self.sim.stats.total("/cgi-bin/media/upload", 0)

    def downloads(self, errcode: int | None = None) -> int:
        """Download calls WeChat answered (with ``errcode`` only, 0 for the bytes)."""
        return self.sim.stats.total("/cgi-bin/media/get", errcode)


MakeMedia = Callable[..., Awaitable[Media]]
