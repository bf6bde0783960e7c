"""What ``wxkf up`` will run, checked before anything starts: every port variable honoured
everywhere it is used, a busy port named in one line, settings problems named."""

from __future__ import annotations

import argparse
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.common.ports import PortBusy
from libs.common.settings import SettingsError
from services.command import wxkf_command
from services.up import run
from services.up.plan import plan

ZEROS = {f"WXKF_{n}_PORT": "0" for n in ("SIM", "INGRESS", "MEDIA", "INTERNAL")}
"""Free ports everywhere a test does not care: another run may hold the defaults."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another process listens on, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_every_port_variable_is_used_wherever_its_port_is(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("SIM", "INGRESS", "MEDIA")}
    env = {f"WXKF_{name}_PORT": str(port) for name, port in ports.items()}
    made = plan({**env, "WXKF_UP_DIR": str(tmp_path), "WXKF_PUSH_PATH": "/wx"})
    assert made.env["WXKF_MEDIA_URL"] == f"http://127.0.0.1:{ports['MEDIA']}"
    assert made.env["WXKF_WECHAT_API_BASE"] == f"http://127.0.0.1:{ports['SIM']}"
    assert made.push_url == f"http://127.0.0.1:{ports['INGRESS']}/wx"
    assert made.url("media") == f"http://127.0.0.1:{ports['MEDIA']}"
    assert set(made.ports) == {"simulator", "ingress", "media"}  # router and sender: none
    assert {k: made.env[k] for k in env} == env  # what the child processes read


def four_free_ports_in_a_row() -> int:
    for base in range(21000, 31000, 97):
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + 4):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise AssertionError("no four free ports in a row")


def test_each_process_gets_its_own_internal_port_from_the_one_variable(tmp_path: Path) -> None:
    base = four_free_ports_in_a_row()
    made = plan({**ZEROS, "WXKF_UP_DIR": str(tmp_path), "WXKF_INTERNAL_PORT": str(base)})
    assert made.internal == {
        "ingress": base,
        "router": base + 1,
        "sender": base + 2,
        "media": base + 3,
    }
    assert made.env_of("router")["WXKF_INTERNAL_PORT"] == str(base + 1)
    assert made.internal_url("router", "/readyz") == f"http://127.0.0.1:{base + 1}/readyz"
    assert made.env_of("ingress")["WXKF_INTERNAL_PORT"] == str(base)
    zero = plan({**ZEROS, "WXKF_UP_DIR": str(tmp_path), "WXKF_INTERNAL_PORT": "0"})
    assert len(set(zero.internal.values()) | set(zero.ports.values())) == 7  # 4 internal, 3 public


def test_a_zero_becomes_a_free_port_that_every_process_is_told(tmp_path: Path) -> None:
    made = plan({**ZEROS, "WXKF_UP_DIR": str(tmp_path)})
    media, sim = made.ports["media"], made.ports["simulator"]
    assert media > 0
    assert sim > 0
    assert made.env["WXKF_MEDIA_PORT"] == str(media)
    assert made.env["WXKF_MEDIA_URL"] == f"http://127.0.0.1:{media}"
    assert made.env["WXKF_SIM_PORT"] == str(sim)


def test_a_local_run_listens_on_loopback_with_its_own_files(tmp_path: Path) -> None:
    made = plan({**ZEROS, "WXKF_UP_DIR": str(tmp_path / "up")})
    assert made.host == made.env["WXKF_LISTEN_HOST"] == "127.0.0.1"
    assert made.env["WXKF_ASSETS_DIR"] == str(tmp_path / "up" / "assets")
    assert made.layout.simulator_state == tmp_path / "up" / "simulator.json"
    assert made.env["WXKF_BUS_URL"].startswith("amqp://")


def test_a_set_variable_wins(tmp_path: Path) -> None:
    made = plan(
        {
            **ZEROS,
            "WXKF_UP_DIR": str(tmp_path),
            "WXKF_LISTEN_HOST": "0.0.0.0",  # noqa: S104 - what the test sets on purpose
            "WXKF_MEDIA_URL": "http://media.example:9",
            "WXKF_ASSETS_DIR": str(tmp_path / "mine"),
            "WXKF_RETRY_BASE_S": "0.5",
        }
    )
    assert made.env["WXKF_MEDIA_URL"] == "http://media.example:9"
    assert made.layout.assets == tmp_path / "mine"
    assert made.url("ingress").startswith("http://127.0.0.1:")  # 0.0.0.0 is reached on loopback
    (commands,) = [q for q in made.queues if q.name == "wxkf.sender.commands"]
    assert commands.retry_base_s == 0.5  # the delay queues --fresh empties are this run's


def test_a_busy_port_is_named_with_its_part_and_variable(taken: int, tmp_path: Path) -> None:
    with pytest.raises(PortBusy) as caught:
        plan({**ZEROS, "WXKF_MEDIA_PORT": str(taken), "WXKF_UP_DIR": str(tmp_path)})
    assert str(caught.value) == (
        f"port {taken} for the media is already in use; set WXKF_MEDIA_PORT to a free port "
        f"(0 picks one), e.g. WXKF_MEDIA_PORT=0 {wxkf_command()} up"
    )


def test_the_command_says_it_in_one_line(
    taken: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable, value in {**ZEROS, "WXKF_SIM_PORT": str(taken)}.items():
        monkeypatch.setenv(variable, value)
    assert run.main(argparse.Namespace(fresh=False)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"wxkf up: port {taken} for the simulator is already in use; set WXKF_SIM_PORT to a "
        f"free port (0 picks one), e.g. WXKF_SIM_PORT=0 {wxkf_command()} up"
    ]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"WXKF_BUS_URL": "memory://"}, "WXKF_BUS_URL: memory:// serves only the four services"),
        ({"WXKF_ROUTER_PORT": "8081"}, "router: WXKF_ROUTER_PORT is no longer read"),
        ({"WXKF_INGRESS_PORT": "eighty"}, "WXKF_INGRESS_PORT"),
        ({"WXKF_SIM_PORT": "70000"}, "WXKF_SIM_PORT"),
    ],
)
def test_settings_problems_are_named_before_anything_starts(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        plan(env)


def test_the_images_the_rules_name_are_written_once_and_a_replacement_kept(
    tmp_path: Path,
) -> None:
    from services.shipped_images import ASSETS
    from services.up.local_state import prepare

    made = plan({**ZEROS, "WXKF_UP_DIR": str(tmp_path)})
    assert sorted(prepare(made.layout)) == sorted(ASSETS)
    mine = made.layout.assets / "size-chart"
    mine.write_bytes(b"\x89PNG my own chart")
    assert prepare(made.layout) == []
    assert mine.read_bytes() == b"\x89PNG my own chart"
