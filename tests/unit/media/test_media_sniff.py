from __future__ import annotations

import pytest

from services.media.sniff import GIF, JPEG, PNG, describe, kind_for_mime, sniff


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", JPEG),
        (b"\xff\xd8\xff\xe1\x00\x10Exif", JPEG),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", PNG),
        (b"GIF87a\x01\x00", GIF),
        (b"GIF89a\x01\x00", GIF),
    ],
)
def test_images_are_known_by_their_magic_numbers(head: bytes, kind: object) -> None:
    assert sniff(head) == kind


@pytest.mark.parametrize(
    ("head", "looks_like"),
    [
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"BM\x00\x00", "bmp"),
        (b"%PDF-1.7\n", "pdf"),
        (b"PK\x03\x04", "zip"),
        (b"<html>", "text/markup"),
        (b'{"a": 1}', "json"),
        (b"\x00\x00\x00\x18ftypheic", "heic/mp4"),
        (b"hello world", "unknown"),
        (b"\x89PNX\r\n\x1a\n", "unknown"),
        (b"", "unknown"),
    ],
)
def test_other_bytes_are_not_images_and_are_named(head: bytes, looks_like: str) -> None:
    assert sniff(head) is None
    assert describe(head) == looks_like


def test_a_truncated_signature_is_not_an_image() -> None:
    assert sniff(b"\x89PNG") is None
    assert sniff(b"\xff\xd8") is None


def test_mime_types_map_to_kinds() -> None:
    assert kind_for_mime("image/jpeg") == JPEG
    assert kind_for_mime("IMAGE/PNG; charset=binary") == PNG
    assert kind_for_mime("application/json") is None
