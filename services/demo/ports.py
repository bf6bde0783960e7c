"""The demo's ports: each checked free before anything starts, 0 replaced by a free one."""

from __future__ import annotations

from collections.abc import Mapping

from libs.common import ports
from services.demo.errors import PortBusy
from services.demo.settings import PORT_VARIABLES

ANY_HOST = "0.0.0.0"  # noqa: S104 - the services listen on every interface; so must the check
COMMAND = "wxkf demo"


def claim(wanted: Mapping[str, int]) -> dict[str, int]:
    """The port of each name, checked free now; a 0 becomes a port that is free now.

    Raises :class:`PortBusy` naming the first port taken (and the variable that moves it).
    """
    try:
        return ports.claim(wanted, PORT_VARIABLES, host=ANY_HOST, run="the demo", command=COMMAND)
    except ports.PortBusy as exc:
        raise PortBusy(str(exc)) from None


def busy_message(name: str, port: int, exc: OSError) -> str:
    return ports.busy_message(name, port, exc, PORT_VARIABLES.get(name), command=COMMAND)
