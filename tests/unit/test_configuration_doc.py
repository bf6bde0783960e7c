"""docs/configuration.md is what ``wxkf config`` prints: the reference cannot fall behind."""

from __future__ import annotations

from pathlib import Path

from services.reference import configuration_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == configuration_reference(), (
        "docs/configuration.md is stale: run `.venv/bin/wxkf config > docs/configuration.md`"
    )


def test_every_service_variable_is_listed() -> None:
    from libs.common.settings import env_name
    from services.composition import SETTINGS

    text = configuration_reference()
    for cls in SETTINGS.values():
        for field in cls.__struct_fields__:
            assert f"`{env_name(field)}`" in text
