"""The ``wxkf`` command: each subcommand reaches the code it drives (plain imports, no names
looked up at run time), and a configuration error is one line and exit code 2."""

from __future__ import annotations

import json

import pytest

from services.cli import main
from services.reference import configuration_reference


def test_config_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    assert capsys.readouterr().out == configuration_reference()


def test_schema_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_access_prints_each_services_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["access"]) == 0
    out = capsys.readouterr().out
    for service in ("ingress", "router", "sender", "media"):
        assert f"wxkf-{service}" in out


def test_run_of_one_service_on_memory_stops_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {"WXKF_APPID": "wx1", "WXKF_APP_SECRET": "s"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WXKF_BUS_URL", raising=False)
    assert main(["run", "sender"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "wxkf: configuration error: sender: WXKF_BUS_URL: memory:// serves only the four "
        "services together in one process (wxkf run all); wxkf run sender runs without the "
        "others: set WXKF_BUS_URL to RabbitMQ (amqp://…)\n"
    )


def test_an_unknown_service_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "billing"])
    assert caught.value.code == 2
    assert "invalid choice: 'billing'" in capsys.readouterr().err
