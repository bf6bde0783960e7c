"""``wxkf run`` (services in this process) and ``wxkf config``.

``wxkf run all`` is the embedded deployment: the four services on one event loop, sharing one
bus and one store (``memory://`` unless ``WXKF_BUS_URL``/``WXKF_STORE_URL`` say otherwise),
each on its own port, honouring every ``WXKF_`` variable — it can serve real WeChat traffic.
``wxkf up``, one process per service, is :mod:`services.up`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from libs.common import bus as bus_lib
from libs.common import store as store_lib
from libs.common.observability.logging import configure_service
from libs.common.runner import PortUnavailable, run_apps
from libs.common.runner import run as run_loop
from libs.common.settings import CommonSettings, Secret, SettingsError, load
from libs.common.stopping import StopSignals

SERVICES = ("ingress", "router", "sender", "media")


@dataclass(frozen=True)
class Service:
    """Where a service's settings and composition root live (imported only when used)."""

    name: str
    settings: str
    port_field: str

    def settings_class(self) -> type[CommonSettings]:
        module, _, cls = self.settings.partition(":")
        found: type[CommonSettings] = getattr(importlib.import_module(module), cls)
        return found

    def create_app(self) -> Callable[..., web.Application]:
        factory = importlib.import_module(f"services.{self.name}.app").create_app
        assert callable(factory)
        return factory  # type: ignore[no-any-return]  # each service's own signature


REGISTRY: dict[str, Service] = {
    "ingress": Service("ingress", "services.ingress.settings:IngressSettings", "ingress_port"),
    "router": Service("router", "services.router.settings:RouterSettings", "router_port"),
    "sender": Service("sender", "services.sender.settings:SenderSettings", "sender_port"),
    "media": Service("media", "services.media.settings:MediaSettings", "media_port"),
}


def selected(names: Sequence[str]) -> list[str]:
    if "all" in names:
        return list(SERVICES)
    return list(dict.fromkeys(names))


def load_settings(
    names: Sequence[str], environ: Mapping[str, str] | None = None, **overrides: Any
) -> dict[str, CommonSettings]:
    """Every selected service's settings; all problems reported together, one per line."""
    loaded: dict[str, CommonSettings] = {}
    problems: list[str] = []
    for name in names:
        cls = REGISTRY[name].settings_class()
        fields = {k: v for k, v in overrides.items() if k in cls.__struct_fields__}
        try:
            loaded[name] = load(cls, environ, **fields)
        except SettingsError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise SettingsError("\n".join(dict.fromkeys(problems)))
    return loaded


async def run_services(
    settings: Mapping[str, CommonSettings],
    *,
    stop: asyncio.Event | None = None,
    signals: StopSignals | None = None,
) -> None:
    """Run the given services on this loop, sharing one bus and one store, until stopped
    (``signals``: the process's, installed by the caller)."""
    first = next(iter(settings.values()))
    mixed = {(s.bus_url, s.store_url) for s in settings.values()}
    if len(mixed) > 1:
        raise SettingsError("services in one process must share WXKF_BUS_URL and WXKF_STORE_URL")
    # Named after what runs here, so an operator tells the connections apart in the broker.
    bus = await bus_lib.connect(first.bus_url, name="wxkf-" + "+".join(settings))
    try:
        store = await store_lib.connect(first.store_url)
        try:
            apps = [
                (
                    REGISTRY[name].create_app()(s, bus=bus, store=store),
                    int(getattr(s, REGISTRY[name].port_field)),
                )
                for name, s in settings.items()
            ]
            grace = max(s.shutdown_grace_s for s in settings.values())
            # One internal port for the process: its metrics are one registry, its readiness
            # that of every service in it.
            await run_apps(
                apps,
                host=first.listen_host,
                shutdown_grace_s=grace,
                internal_port=first.internal_port,
                stop=stop,
                signals=signals,
            )
        finally:
            await store.close()
    finally:
        await bus.close()


def run_settings(
    names: Sequence[str], environ: Mapping[str, str] | None = None
) -> dict[str, CommonSettings]:
    """The settings of ``wxkf run <names>``. Media always requires a token: every service in
    one process without ``WXKF_INTERNAL_TOKEN`` gets one made for the run, which the sender's
    calls carry (a client outside the process needs the variable set); media alone, or with
    some others, needs it set."""
    env = os.environ if environ is None else environ
    given = env.get("WXKF_INTERNAL_TOKEN") or env.get("WXKF_INTERNAL_TOKEN_FILE")
    embedded: dict[str, Any] = {}
    if set(names) == set(SERVICES) and not given:
        embedded["internal_token"] = Secret(secrets.token_urlsafe(32))
    return load_settings(names, environ, **embedded)


def run(args: argparse.Namespace) -> int:
    names = selected(args.services)
    try:
        settings = run_settings(names)
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"wxkf: configuration error: {line}", file=sys.stderr)
        return 2
    first = next(iter(settings.values()))
    configure_service(names[0] if len(names) == 1 else "wxkf", first)
    signals = StopSignals()
    signals.install()  # for the whole process: a late second signal is judged the same way
    try:
        run_loop(run_services(settings, signals=signals))
    except PortUnavailable as exc:
        print(f"wxkf: {exc}", file=sys.stderr)
        return 2
    return 0


# --- wxkf config --------------------------------------------------------------------------------

CONFIG_PREAMBLE = """\
# Configuration

Every setting is an environment variable with the prefix `WXKF_`, read once at start into
a typed settings object per service. A missing or malformed value stops the service before
it binds a port, with one line that names the variable. A variable marked *secret* may
instead be read from a file: `WXKF_<NAME>_FILE=/path` (how Kubernetes mounts Secrets);
secrets never appear in logs or error messages.

This page is generated from the settings classes by `wxkf config`; a test keeps it current.
"""


UP_PREAMBLE = """\
`wxkf up` also sets, when they are not set: `WXKF_BUS_URL` and `WXKF_STORE_URL` to RabbitMQ and
Redis on loopback, the demo credentials, `WXKF_LISTEN_HOST=127.0.0.1`, `WXKF_WECHAT_API_BASE`
to its simulator, `WXKF_MEDIA_URL` to its media service and `WXKF_ASSETS_DIR` to
`<WXKF_UP_DIR>/assets`, `WXKF_INTERNAL_TOKEN` to a token made for the run; each port variable
may be 0 (a free port), and each service's internal port is the next one up from
`WXKF_INTERNAL_PORT` (ingress, router, sender, media). With the broker on this machine, each
service runs as a broker and Redis user of its own (`wxkf-<service>`, made with `rabbitmqctl`
and `ACL SETUSER`, new passwords at every start; `WXKF_BUS_DECLARE=own`), as in prod."""


def _table(rows: Sequence[Any]) -> list[str]:
    lines = ["| variable | type | default | |", "|---|---|---|---|"]
    for row in rows:
        kind, doc = (text.replace("|", "\\|") for text in (row.type, row.doc))
        lines.append(f"| `{row.variable}` | {kind} | {row.default} | {doc} |")
    return lines


def configuration_reference() -> str:
    from libs.common.settings import WeChatApiSettings, describe

    common = describe(CommonSettings)
    api = [f for f in describe(WeChatApiSettings) if f not in common]
    out = [CONFIG_PREAMBLE, "## Every service", "", *_table(common)]
    out += ["", "## WeChat's API (sender and media)", "", *_table(api)]
    shown = {f.variable for f in (*common, *api)}
    for name in SERVICES:
        rows = [f for f in describe(REGISTRY[name].settings_class()) if f.variable not in shown]
        out += ["", f"## {name}", "", *_table(rows)]
    from services.up.plan import UpSettings  # imports this module: not at the top

    out += ["", "## wxkf up (a local run)", "", UP_PREAMBLE, "", *_table(describe(UpSettings))]
    return "\n".join(out) + "\n"


def config_main(args: argparse.Namespace) -> int:
    sys.stdout.write(configuration_reference())
    return 0
