"""Reading an upload: sniffed from its first bytes, capped and hashed while it streams in.

The body is never held whole in memory beyond ``spool_bytes``: past that it continues in an
anonymous temporary file. A body over ``max_bytes`` is refused as soon as the byte that
crosses the cap arrives, and a non-image as soon as its first bytes are in.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from types import TracebackType
from typing import IO

from services.media.errors import EmptyBody, NotAnImage, TooLarge, TypeNotAllowed
from services.media.sniff import HEAD_BYTES, Kind, describe, sniff

CHUNK = 64 * 1024


class Intake:
    """A received upload: its kind, SHA-256 and size, and its bytes (memory or temp file)."""

    def __init__(self, kind: Kind, sha256: str, size: int, body: IO[bytes]) -> None:
        self.kind = kind
        self.sha256 = sha256
        self.size = size
        self._body = body

    @property
    def filename(self) -> str:
        """The name WeChat sees: the hash with the extension of the detected kind."""
        return f"{self.sha256[:16]}.{self.kind.ext}"

    def open(self) -> IO[bytes]:
        """The bytes from the start (one reader at a time)."""
        self._body.seek(0)
        return self._body

    def read_all(self) -> bytes:
        self._body.seek(0)
        return self._body.read()

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> Intake:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def receive(
    chunks: AsyncIterator[bytes],
    *,
    max_bytes: int,
    allowed: frozenset[Kind],
    spool_bytes: int,
    spool_dir: str | None = None,
    claimed: str = "",
) -> Intake:
    """Read ``chunks`` into an :class:`Intake`, or raise the error that explains the refusal.

    ``claimed`` (a filename or content type the client gave) only makes the error clearer.
    """
    digest = hashlib.sha256()
    # Rolled over to a real file in spool_dir once it grows past spool_bytes.
    body: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - handed to Intake, closed by it
        max_size=spool_bytes, dir=spool_dir
    )
    size = 0
    head = b""
    kind: Kind | None = None
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"the body is larger than the limit of {max_bytes} bytes")
            if kind is None:
                head = (head + chunk)[:HEAD_BYTES]
                if len(head) >= HEAD_BYTES:
                    kind = _judge(head, allowed, claimed)
            digest.update(chunk)
            body.write(chunk)
        if size == 0:
            raise EmptyBody("the upload has no bytes")
        if kind is None:
            kind = _judge(head, allowed, claimed)
    except BaseException:
        body.close()
        raise
    return Intake(kind, digest.hexdigest(), size, body)


def _judge(head: bytes, allowed: frozenset[Kind], claimed: str) -> Kind:
    kind = sniff(head)
    said = f" (it claims to be {claimed!r})" if claimed else ""
    if kind is None:
        raise NotAnImage(
            f"the bytes are not a JPG, PNG or GIF image: they look like {describe(head)}{said}"
        )
    if kind not in allowed:
        names = ", ".join(sorted(k.name for k in allowed))
        raise TypeNotAllowed(f"{kind.name} images are not accepted; accepted: {names}")
    return kind
