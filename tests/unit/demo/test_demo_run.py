"""``wxkf demo`` refuses to start, with one clear line and exit code 2, when it cannot run."""

from __future__ import annotations

import argparse
import asyncio
import errno
import socket
from pathlib import Path

import pytest

from services.demo.errors import DemoError, PortBusy
from services.demo.ports import claim
from services.demo.run import main, prepare, ready


def run(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argparse.Namespace(exit=True))
    return code, capsys.readouterr().err


def test_a_busy_port_stops_the_demo_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("0.0.0.0", 0))  # noqa: S104 - as the services bind
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("WXKF_INGRESS_PORT", str(port))
        monkeypatch.setenv("WXKF_DEMO_DIR", str(tmp_path / "demo"))
        code, err = run(capsys)
    assert code == 2
    assert err.startswith(f"wxkf demo: port {port} for the ingress is already in use")
    assert "WXKF_INGRESS_PORT" in err
    assert not (tmp_path / "demo").exists()


def test_a_malformed_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WXKF_SIM_PORT", "ninety")
    code, err = run(capsys)
    assert code == 2
    assert err.startswith("wxkf demo: configuration error: WXKF_SIM_PORT")


def test_an_unusable_directory_is_named(tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a directory", encoding="utf-8")
    with pytest.raises(DemoError, match=f"cannot write the demo's files in {occupied}"):
        prepare(str(occupied))


def test_the_files_go_where_asked(tmp_path: Path) -> None:
    layout = prepare(str(tmp_path / "here"))
    assert layout.log == tmp_path / "here" / "services.log"
    assert (layout.assets / "size-chart").is_file()
    assert prepare("").directory.name.startswith("wxkf-demo-")


async def test_a_port_taken_after_the_check_is_named_as_well(tmp_path: Path) -> None:
    ports = claim({"ingress": 0, "router": 0, "internal": 0})
    taken = ports["router"]

    async def bind() -> None:
        raise OSError(
            errno.EADDRINUSE,
            f"error while attempting to bind on address ('0.0.0.0', {taken}): address in use",
        )

    services = asyncio.create_task(bind())
    with pytest.raises(PortBusy, match=f"port {taken} for the router is already in use"):
        await ready(ports, services, tmp_path / "log")


async def test_services_that_stop_while_starting_point_at_the_log(tmp_path: Path) -> None:
    async def fail() -> None:
        raise RuntimeError("rules file broken")

    services = asyncio.create_task(fail())
    with pytest.raises(DemoError, match=f"stopped while starting .* see {tmp_path}/log"):
        await ready(claim({"ingress": 0, "internal": 0}), services, tmp_path / "log")
