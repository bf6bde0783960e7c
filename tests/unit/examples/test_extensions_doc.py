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


def test_the_run_example_talks_to_what_make_up_runs() -> None:
    from services.up.plan import environment

    (block,) = re.findall(r"```sh\n(WXKF_APPID=.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    given = dict(re.findall(r"^(WXKF_\w+)=(\S+) \\$", block, re.M))
    local = environment({})
    assert given["WXKF_APPID"] == local["WXKF_APPID"]
    assert given["WXKF_BUS_URL"] == local["WXKF_BUS_URL"]
    assert Path(given["WXKF_HISTORY_DB"]).parent.is_dir()
