"""The demo's few settings: ports, where its files go, how much the services log.

Everything else is fixed on purpose: the demo always runs on ``memory://`` with the
simulator's demo credentials and the shipped rules, whatever else the environment says.
The ports default to numbers that do not clash with the services' own defaults (8080…),
so the demo can run beside ``wxkf up``; each may be set, and 0 picks a free one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from libs.common.settings import load

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class DemoSettings(msgspec.Struct, frozen=True, kw_only=True):
    ingress_port: Port = 18080
    """The push URL's port (``http://127.0.0.1:<port>/wechat``)."""
    media_port: Port = 18084
    sim_port: Port = 18090
    """The simulated WeChat API."""
    internal_port: Port = 18089
    """Health, readiness and metrics of the services (one process, one internal port)."""
    demo_dir: str = ""
    """Where the services' log and the demo's images go; unset: a new temporary directory."""
    log_level: str = "debug"
    """Of the services' log file (debug: a line for every push, decision and send); the
    console shows the conversation only."""

    def ports(self) -> dict[str, int]:
        return {
            "ingress": self.ingress_port,
            "media": self.media_port,
            "simulator": self.sim_port,
            "internal": self.internal_port,
        }


PORT_VARIABLES = {
    "ingress": "WXKF_INGRESS_PORT",
    "media": "WXKF_MEDIA_PORT",
    "simulator": "WXKF_SIM_PORT",
    "internal": "WXKF_INTERNAL_PORT",
}


def load_demo(environ: Mapping[str, str] | None = None) -> DemoSettings:
    """The demo's settings from ``WXKF_*``; raises ``SettingsError`` naming a bad variable."""
    return load(DemoSettings, environ)
