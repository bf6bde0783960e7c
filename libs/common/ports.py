"""The ports of a local run (``wxkf demo``, ``wxkf up``): each checked free before anything
starts, 0 made a port that is free now, a taken one named with the variable that moves it."""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping


class PortBusy(Exception):
    """A port a local run needs is taken; the message names the variable that moves it."""


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As aiohttp binds: a port whose last connection lingers in TIME_WAIT is free.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def claim(
    wanted: Mapping[str, int],
    variables: Mapping[str, str],
    *,
    host: str,
    run: str,
    command: str,
) -> dict[str, int]:
    """The port of each name, checked free on ``host`` now; a 0 becomes a port free now.

    Raises :class:`PortBusy` naming the first port taken, its part and the variable that
    moves it (from ``variables``), with ``command`` in the example. Another process may still
    take a port between this check and the start; the start then fails with the same kind of
    message.
    """
    explicit = [p for p in wanted.values() if p]
    for name, port in wanted.items():
        if port and explicit.count(port) > 1:
            raise PortBusy(
                f"port {port} is given to more than one part of {run} ({name} among them); "
                f"set {variables.get(name, 'the port')} to another"
            )
    held: list[socket.socket] = []
    chosen: dict[str, int] = {}
    try:
        for name, port in wanted.items():
            try:
                sock = _bind(host, port)
            except OSError as exc:
                raise PortBusy(
                    busy_message(name, port, exc, variables.get(name), command=command)
                ) from None
            held.append(sock)
            chosen[name] = sock.getsockname()[1]
    finally:
        # Held until every port is chosen, so two zeros never get the same port.
        for sock in held:
            sock.close()
    return chosen


def busy_message(name: str, port: int, exc: OSError, variable: str | None, *, command: str) -> str:
    variable = variable or "its variable"
    why = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return (
        f"port {port} for the {name} is {why}; set {variable} to a free port "
        f"(0 picks one), e.g. {variable}=0 {command}"
    )
