"""The demo's ports: each checked free before anything starts, 0 replaced by a free one."""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping

from services.demo.errors import PortBusy
from services.demo.settings import PORT_VARIABLES

ANY_HOST = "0.0.0.0"  # noqa: S104 - the services listen on every interface; so must the check


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As aiohttp binds: a port whose last connection lingers in TIME_WAIT is free.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((ANY_HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


def claim(wanted: Mapping[str, int]) -> dict[str, int]:
    """The port of each name, checked free now; a 0 becomes a port that is free now.

    Raises :class:`PortBusy` naming the first port taken (and the variable that moves it).
    Another process may still take a port between this check and the start; the start then
    fails with the same kind of message.
    """
    explicit = [p for p in wanted.values() if p]
    for name, port in wanted.items():
        if port and explicit.count(port) > 1:
            raise PortBusy(
                f"port {port} is given to more than one part of the demo ({name} among them); "
                f"set {PORT_VARIABLES.get(name, 'the port')} to another"
            )
    held: list[socket.socket] = []
    chosen: dict[str, int] = {}
    try:
        for name, port in wanted.items():
            try:
                sock = _bind(port)
            except OSError as exc:
                raise PortBusy(busy_message(name, port, exc)) from None
            held.append(sock)
            chosen[name] = sock.getsockname()[1]
    finally:
        # Held until every port is chosen, so two zeros never get the same port.
        for sock in held:
            sock.close()
    return chosen


def busy_message(name: str, port: int, exc: OSError) -> str:
    variable = PORT_VARIABLES.get(name, "its variable")
    why = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return (
        f"port {port} for the {name} is {why}; set {variable} to a free port "
        f"(0 picks one), e.g. {variable}=0 wxkf demo"
    )
