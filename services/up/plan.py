"""What one ``wxkf up`` runs: its environment, ports and files, checked before it starts.

Every value comes from a ``WXKF_`` variable when it is set, else from a default for a local
run. The ports are checked free (0 picks a free one) and then written into the environment,
so every place that names a port (the simulator's URL, the media URL, the push URL printed)
uses the same number.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import msgspec

from libs.common.ports import claim
from libs.common.settings import (
    LOCAL_BUS_URL,
    LOCAL_STORE_URL,
    SettingsError,
    load,
    refuse_memory,
)
from libs.common.topology import ALL_QUEUES, SENDER_COMMANDS, SERVICES, QueueSpec
from services.command import wxkf_command
from services.composition import load_settings, public_port
from services.sender.settings import SenderSettings
from services.simulator.config import DEMO_AES_KEY, DEMO_APPID, DEMO_SECRET, DEMO_TOKEN

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

LOOPBACK = "127.0.0.1"
SIMULATOR = "simulator"
PORT_VARIABLES = {
    SIMULATOR: "WXKF_SIM_PORT",
    "ingress": "WXKF_INGRESS_PORT",
    "media": "WXKF_MEDIA_PORT",
}
"""The ports a run serves besides the internal ones: the router and the sender have none."""


class UpSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``wxkf up``'s own variables (the services read theirs)."""

    sim_port: Port = 8090
    """The simulated WeChat API."""
    up_dir: str = ".wxkf/up"
    """What is kept between runs: the simulator's state, the images the rules name."""


class Layout(msgspec.Struct, frozen=True, kw_only=True):
    """The files of a run."""

    directory: Path
    assets: Path
    """The media service's asset directory (``WXKF_ASSETS_DIR``)."""
    simulator_state: Path


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    env: dict[str, str]
    """What every process gets."""
    ports: dict[str, int]
    """By part: the simulator, ingress and media."""
    internal: dict[str, int] = {}
    """Each service's internal port (health, readiness, metrics). Four processes on one host
    cannot share one value of ``WXKF_INTERNAL_PORT``, so each gets the next port up from it
    (ingress, router, sender, media); from 0, each a free one."""
    own: dict[str, dict[str, str]] = {}
    """Each service's own variables (its broker and Redis user), over :attr:`env`."""
    host: str
    """Where the services listen (``WXKF_LISTEN_HOST``)."""
    layout: Layout
    queues: list[QueueSpec]
    """wxkf's work queues as this run declares them (the sender's retry delays are settings)."""

    def url(self, name: str, path: str = "") -> str:
        host = LOOPBACK if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.ports[name]}{path}"

    def internal_url(self, name: str, path: str = "") -> str:
        host = LOOPBACK if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.internal[name]}{path}"

    def env_of(self, name: str) -> dict[str, str]:
        """What the process of ``name`` gets: the run's environment, its internal port, and its
        own broker and Redis URLs once :mod:`services.up.users` made them."""
        env = self.env | self.own.get(name, {})
        if name in self.internal:
            env["WXKF_INTERNAL_PORT"] = str(self.internal[name])
        return env

    @property
    def push_url(self) -> str:
        return self.url("ingress", self.env.get("WXKF_PUSH_PATH", "/wechat"))


def environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with the defaults of a local run for what it does not set."""
    env = dict(environ)
    defaults = {
        "WXKF_BUS_URL": LOCAL_BUS_URL,
        "WXKF_STORE_URL": LOCAL_STORE_URL,
        "WXKF_APPID": DEMO_APPID,
        "WXKF_APP_SECRET": DEMO_SECRET,
        "WXKF_TOKEN": DEMO_TOKEN,
        "WXKF_AES_KEY": DEMO_AES_KEY,
        "WXKF_LISTEN_HOST": LOOPBACK,
        "WXKF_LOG_FORMAT": "console",
        # Media and the sender (separate processes) share a token made for this run.
        "WXKF_INTERNAL_TOKEN": secrets.token_urlsafe(24),
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    return env


def plan(environ: Mapping[str, str]) -> Plan:
    """The run ``environ`` asks for. Raises :class:`SettingsError` (one problem per line) or
    :class:`~libs.common.ports.PortBusy` (naming the variable that moves the port)."""
    env = environment(environ)
    problems: list[str] = []
    try:
        up = load(UpSettings, env)
    except SettingsError as exc:
        problems.append(f"wxkf up: {exc}")
        up = UpSettings()
    try:
        settings = load_settings(SERVICES, env)
    except SettingsError as exc:
        problems += str(exc).splitlines()
        settings = {}
    for service, s in settings.items():
        try:
            refuse_memory(s, alone="wxkf up (each service its own process)")
        except SettingsError as exc:
            problems.append(f"{service}: {exc}")
            break
    if problems:
        raise SettingsError("\n".join(problems))
    host = next(iter(settings.values())).listen_host
    wanted = {SIMULATOR: up.sim_port}
    for service, s in settings.items():
        port = public_port(s)
        if port is not None:
            wanted[service] = port
    command = f"{wxkf_command()} up"
    internal_names = {f"{name} internal port": name for name in SERVICES}
    base = settings[SERVICES[0]].internal_port
    claimed = claim(
        wanted | {key: base + i if base else 0 for i, key in enumerate(internal_names)},
        PORT_VARIABLES | dict.fromkeys(internal_names, "WXKF_INTERNAL_PORT"),
        host=host,
        run="wxkf up",
        command=command,
    )
    ports = {name: port for name, port in claimed.items() if name not in internal_names}
    internal: dict[str, int] = {
        internal_names[k]: port for k, port in claimed.items() if k in internal_names
    }
    for name, port in ports.items():
        env[PORT_VARIABLES[name]] = str(port)
    directory = Path(up.up_dir)
    layout = Layout(
        directory=directory,
        assets=Path(env.get("WXKF_ASSETS_DIR") or directory / "assets"),
        simulator_state=directory / "simulator.json",
    )
    env.setdefault("WXKF_ASSETS_DIR", str(layout.assets))
    sender = settings["sender"]
    assert isinstance(sender, SenderSettings)
    queues = [sender.commands_queue() if q.name == SENDER_COMMANDS.name else q for q in ALL_QUEUES]
    made = Plan(env=env, ports=ports, internal=internal, host=host, layout=layout, queues=queues)
    # The simulator and media are called on the ports just chosen.
    env.setdefault("WXKF_WECHAT_API_BASE", made.url(SIMULATOR))
    env.setdefault("WXKF_MEDIA_URL", made.url("media"))
    return made
