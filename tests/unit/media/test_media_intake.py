from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
from media_bytes import GIF_MAGIC, JPEG_MAGIC, chunked, image

from services.media.errors import EmptyBody, NotAnImage, TooLarge, TypeNotAllowed
from services.media.intake import receive
from services.media.sniff import GIF, JPEG, KINDS, PNG

ALL = frozenset(KINDS)


async def test_an_image_is_sniffed_hashed_and_kept_byte_for_byte() -> None:
    data = image(size=10_000)
    with await receive(chunked(data, 7), max_bytes=20_000, allowed=ALL, spool_bytes=1 << 20) as got:
        assert got.kind == PNG
        assert got.size == len(data)
        assert got.sha256 == hashlib.sha256(data).hexdigest()
        assert got.read_all() == data
        assert got.filename == got.sha256[:16] + ".png"


async def test_a_body_beyond_the_spool_threshold_is_kept_on_disk_not_in_memory() -> None:
    data = image(JPEG_MAGIC, size=300_000)
    with await receive(
        chunked(data, 65536), max_bytes=1 << 20, allowed=ALL, spool_bytes=1024
    ) as got:
        body = got.open()
        assert body._rolled  # type: ignore[attr-defined]  # SpooledTemporaryFile's own flag
        assert got.kind == JPEG
        assert got.read_all() == data


async def test_a_body_at_the_cap_is_accepted() -> None:
    data = image(GIF_MAGIC, size=5000)
    with await receive(chunked(data), max_bytes=5000, allowed=ALL, spool_bytes=100) as got:
        assert got.kind == GIF


async def test_an_oversize_body_is_refused_while_it_streams() -> None:
    consumed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal consumed
        yield image(size=1000)
        while True:
            consumed += 1
            yield b"\x00" * 1000

    with pytest.raises(TooLarge, match="larger than the limit of 10000 bytes"):
        await receive(endless(), max_bytes=10_000, allowed=ALL, spool_bytes=1000)
    # It stopped at the chunk that crossed the cap instead of draining the stream.
    assert consumed == 10


async def test_bytes_that_are_not_an_image_are_refused_after_the_first_bytes() -> None:
    consumed = 0

    async def text() -> AsyncIterator[bytes]:
        nonlocal consumed
        while True:
            consumed += 1
            yield b"hello, this is not a picture " * 10

    with pytest.raises(NotAnImage, match="look like unknown"):
        await receive(text(), max_bytes=1 << 20, allowed=ALL, spool_bytes=1000)
    assert consumed == 1


async def test_a_disguised_file_is_refused_whatever_its_name_claims() -> None:
    with pytest.raises(NotAnImage, match=r"look like pdf \(it claims to be 'cat.png'\)"):
        await receive(
            chunked(b"%PDF-1.7\n" + b"x" * 100),
            max_bytes=1000,
            allowed=ALL,
            spool_bytes=100,
            claimed="cat.png",
        )


async def test_a_short_non_image_is_refused_too() -> None:
    with pytest.raises(NotAnImage):
        await receive(chunked(b"GIF8"), max_bytes=1000, allowed=ALL, spool_bytes=100)


async def test_an_image_kind_outside_the_configured_set_is_refused() -> None:
    with pytest.raises(TypeNotAllowed, match="gif images are not accepted; accepted: jpeg, png"):
        await receive(
            chunked(image(GIF_MAGIC)),
            max_bytes=1 << 20,
            allowed=frozenset({JPEG, PNG}),
            spool_bytes=100,
        )


async def test_an_empty_body_is_refused() -> None:
    with pytest.raises(EmptyBody):
        await receive(chunked(b""), max_bytes=1000, allowed=ALL, spool_bytes=100)
