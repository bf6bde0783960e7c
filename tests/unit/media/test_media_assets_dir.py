from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from media_bytes import GIF_MAGIC, image

from services.media.assets import AssetDir, check_name
from services.media.errors import (
    AssetNotFound,
    BadAssetName,
    NotAnImage,
    TooLarge,
    TypeNotAllowed,
)
from services.media.intake import Intake
from services.media.sniff import JPEG, KINDS, PNG

ALL = frozenset(KINDS)


@pytest.mark.parametrize("name", ["a", "welcome.png", "A-b_c.1", "x" * 128])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".env", "a/b", "../x", "a..b", "x" * 129, "with space", "é.png", "-x", "_x"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(BadAssetName):
        check_name(name)


def test_put_then_describe_and_load(tmp_path: Path) -> None:
    assets = AssetDir(tmp_path, max_bytes=10_000, allowed=ALL)
    data = image(size=3000)
    with Intake(PNG, hashlib.sha256(data).hexdigest(), len(data), io.BytesIO(data)) as intake:
        stored = assets.put("one.png", intake)
    assert (tmp_path / "one.png").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["one.png"]
    described = assets.describe("one.png")
    assert described == stored
    assert described.sha256 == hashlib.sha256(data).hexdigest()
    with assets.load("one.png") as loaded:
        assert loaded.read_all() == data
        assert loaded.kind == PNG


def test_describe_notices_a_changed_file(tmp_path: Path) -> None:
    assets = AssetDir(tmp_path, max_bytes=10_000, allowed=ALL)
    (tmp_path / "x").write_bytes(image(size=100))
    first = assets.describe("x")
    (tmp_path / "x").write_bytes(image(b"\xff\xd8\xff\xe0", size=200))
    second = assets.describe("x")
    assert second.sha256 != first.sha256
    assert second.kind == JPEG


def test_errors_for_missing_large_and_non_image_files(tmp_path: Path) -> None:
    assets = AssetDir(tmp_path, max_bytes=1000, allowed=frozenset({PNG}))
    with pytest.raises(AssetNotFound):
        assets.describe("missing")
    (tmp_path / "big").write_bytes(image(size=1001))
    with pytest.raises(TooLarge):
        assets.describe("big")
    (tmp_path / "text").write_bytes(b"hello there, not an image")
    with pytest.raises(NotAnImage):
        assets.describe("text")
    (tmp_path / "anim").write_bytes(image(GIF_MAGIC, size=100))
    with pytest.raises(TypeNotAllowed):
        assets.describe("anim")
    (tmp_path / "dir").mkdir()
    with pytest.raises(AssetNotFound):
        assets.describe("dir")


def test_delete(tmp_path: Path) -> None:
    assets = AssetDir(tmp_path, max_bytes=1000, allowed=ALL)
    (tmp_path / "x").write_bytes(image(size=10))
    assets.delete("x")
    with pytest.raises(AssetNotFound):
        assets.delete("x")
