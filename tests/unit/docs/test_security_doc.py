"""docs/security.md against what it describes: every Secret key has its row, every test it
names exists, and the README links it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
PAGE = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
TEMPLATE = ROOT / "deploy" / "k8s" / "base" / "secret.template.yaml"
SERVICES = ("ingress", "router", "sender", "media")


def test_every_secret_key_has_its_row() -> None:
    keys = set(yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))["stringData"])
    rows = set(re.findall(r"^\| `([a-z<>-]+)`", PAGE, re.M))
    named = {row.replace("<service>", s) for row in rows for s in SERVICES}
    assert keys <= named, sorted(keys - named)


def test_every_test_it_names_exists() -> None:
    paths = set(re.findall(r"`(tests/[\w/]+\.py)`", PAGE))
    assert paths
    assert [p for p in sorted(paths) if not (ROOT / p).is_file()] == []


def test_the_readme_links_it() -> None:
    assert "(docs/security.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
