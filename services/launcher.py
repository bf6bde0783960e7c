"""``wxkf run``: services in this process.

``wxkf run all`` is the embedded deployment: the four services on one event loop, sharing one
bus and one store (``memory://`` unless ``WXKF_BUS_URL``/``WXKF_STORE_URL`` say otherwise),
ingress and media each on its own port, honouring every ``WXKF_`` variable — it can serve real
WeChat traffic. Fewer than the four in one process need RabbitMQ and Redis, as one service
alone does. ``wxkf up``, one process per service, is :mod:`services.up`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from libs.common import bus as bus_lib
from libs.common import store as store_lib
from libs.common.observability.logging import configure_service
from libs.common.runner import PortUnavailable, run_apps
from libs.common.runner import run as run_loop
from libs.common.settings import CommonSettings, Secret, SettingsError, refuse_memory
from libs.common.stopping import StopSignals
from libs.common.topology import SERVICES, Service
from services.composition import create_app, load_settings, public_port


def selected(names: Sequence[str]) -> list[Service]:
    if "all" in names:
        return list(SERVICES)
    return [s for s in SERVICES if s in names]


async def run_services(
    settings: Mapping[Service, CommonSettings],
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
                (create_app(s, bus=bus, store=store), public_port(s)) for s in settings.values()
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
    names: Sequence[Service], environ: Mapping[str, str] | None = None
) -> dict[Service, CommonSettings]:
    """The settings of ``wxkf run <names>``. Media always requires a token: every service in
    one process without ``WXKF_INTERNAL_TOKEN`` gets one made for the run, which the sender's
    calls carry (a client outside the process needs the variable set); media alone, or with
    some others, needs it set. Only the four together may share ``memory://``: without the
    others in the process, a service would publish to, and read from, nobody."""
    env = os.environ if environ is None else environ
    given = env.get("WXKF_INTERNAL_TOKEN") or env.get("WXKF_INTERNAL_TOKEN_FILE")
    embedded: dict[str, Any] = {}
    everyone = set(names) == set(SERVICES)
    if everyone and not given:
        embedded["internal_token"] = Secret(secrets.token_urlsafe(32))
    settings = load_settings(names, environ, **embedded)
    if not everyone:
        problems = []
        for name, s in settings.items():
            try:
                refuse_memory(s, alone=f"wxkf run {' '.join(names)}")
            except SettingsError as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            raise SettingsError("\n".join(dict.fromkeys(problems)))
    return settings


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
