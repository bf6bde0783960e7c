"""The ``wxkf`` a hint tells people to type is one their shell finds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from services.command import wxkf_command

OURS = Path(sys.executable).with_name("wxkf")


def test_on_path_it_is_wxkf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(OURS.parent))
    assert wxkf_command() == "wxkf"


def test_off_path_it_is_the_virtualenvs_program(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # another directory, without wxkf
    monkeypatch.chdir(OURS.parents[2])  # the checkout, as after `make install`
    assert wxkf_command() == str(OURS.relative_to(OURS.parents[2]))  # .venv/bin/wxkf
    monkeypatch.chdir(tmp_path)  # elsewhere: the whole path
    assert wxkf_command() == str(OURS)
