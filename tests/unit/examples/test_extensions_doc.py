"""docs/extensions.md stays true to the code: its sketch parses, its settings table is whole."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from examples.extension.settings import HistorySettings
from libs.common.settings import env_name

DOC = Path(__file__).resolve().parents[3] / "docs" / "extensions.md"


def test_the_node_sketch_is_valid_javascript(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript sketch cannot be checked here")
    (sketch,) = re.findall(r"```js\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    script = tmp_path / "echo.js"
    script.write_text(sketch, encoding="utf-8")
    done = subprocess.run(  # noqa: S603 - node, found on PATH, checking a file we wrote
        [node, "--check", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_every_history_setting_is_documented_with_its_default() -> None:
    text = DOC.read_text(encoding="utf-8")
    for field in msgspec.structs.fields(HistorySettings):
        if not field.name.startswith("history_"):
            continue
        name = env_name(field.name)
        row = re.search(rf"^\| `{name}` \| (.*?) \|", text, re.M)
        assert row is not None, f"{name} is missing from {DOC.name}"
        shown = row.group(1).strip("`")
        if field.required:
            assert shown == "required", name
        elif isinstance(field.default, str):
            assert shown == field.default, name
        else:
            assert float(shown) == field.default, name
