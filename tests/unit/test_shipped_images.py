"""The demo draws every image the shipped rules name, as images the media service accepts."""

from __future__ import annotations

import struct
from pathlib import Path

import yaml

from services.media.sniff import sniff
from services.shipped_images import ASSETS, returns_card, size_chart, write_assets

EXAMPLE = Path(__file__).parents[2] / "examples" / "rules.yaml"


def named_assets(node: object) -> set[str]:
    """Every ``image: NAME`` and ``thumb_asset: NAME`` anywhere in a rules file."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("image", "thumb_asset") and isinstance(value, str):
                found.add(value)
            found |= named_assets(value)
    elif isinstance(node, list):
        for item in node:
            found |= named_assets(item)
    return found


def test_every_asset_of_the_shipped_rules_is_drawn() -> None:
    names = named_assets(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    assert names
    assert names <= set(ASSETS)


def test_the_images_are_pngs_of_their_size() -> None:
    for draw, size in ((size_chart, (240, 144)), (returns_card, (240, 120))):
        data = draw(0)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert data[12:16] == b"IHDR"
        assert struct.unpack(">II", data[16:24]) == size
        kind = sniff(data[:64])
        assert kind is not None
        assert kind.name == "png"


def test_a_tint_makes_other_bytes() -> None:
    assert size_chart(0) != size_chart(1)
    assert returns_card(3) == returns_card(3)


def test_write_assets_fills_a_new_directory(tmp_path: Path) -> None:
    written = write_assets(tmp_path / "a" / "assets", tint=7)
    assert sorted(p.name for p in written) == sorted(ASSETS)
    assert (tmp_path / "a" / "assets" / "size-chart").read_bytes() == size_chart(7)
