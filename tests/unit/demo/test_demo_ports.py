"""The demo's ports: checked before anything starts, zeros made concrete, clashes named."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from services.demo.errors import PortBusy
from services.demo.ports import claim


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another process listens on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("0.0.0.0", 0))  # noqa: S104 - as the services bind
    sock.listen()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_zeros_become_distinct_free_ports() -> None:
    chosen = claim({"ingress": 0, "router": 0, "simulator": 0})
    assert set(chosen) == {"ingress", "router", "simulator"}
    assert len(set(chosen.values())) == 3
    assert all(port > 0 for port in chosen.values())


def test_a_free_port_is_kept_as_given() -> None:
    (port,) = claim({"media": 0}).values()
    assert claim({"media": port}) == {"media": port}


def test_a_busy_port_is_named_with_the_variable_that_moves_it(taken: int) -> None:
    with pytest.raises(PortBusy) as caught:
        claim({"ingress": 0, "media": taken})
    message = str(caught.value)
    assert f"port {taken} for the media is already in use" in message
    assert "WXKF_MEDIA_PORT" in message


def test_one_port_for_two_parts_is_refused() -> None:
    with pytest.raises(PortBusy, match="more than one part of the demo"):
        claim({"ingress": 18999, "router": 18999})
