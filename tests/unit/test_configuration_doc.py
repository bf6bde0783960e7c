"""docs/configuration.md is what ``wxkf config`` prints: the reference cannot fall behind."""

from __future__ import annotations

from pathlib import Path

from services.launcher import configuration_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == configuration_reference(), (
        "docs/configuration.md is stale: run `.venv/bin/wxkf config > docs/configuration.md`"
    )


def test_every_service_variable_is_listed() -> None:
    from libs.common.settings import env_name
    from services.launcher import REGISTRY

    text = configuration_reference()
    for service in REGISTRY.values():
        for field in service.settings_class().__struct_fields__:
            assert f"`{env_name(field)}`" in text
