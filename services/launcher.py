"""``wxkf run`` (services in this process) and ``wxkf up`` (one process per service).

``wxkf run all`` is the embedded deployment: the four services on one event loop, sharing one
bus and one store (``memory://`` unless ``WXKF_BUS_URL``/``WXKF_STORE_URL`` say otherwise),
each on its own port, honouring every ``WXKF_`` variable — it can serve real WeChat traffic.

``wxkf up`` is the shape Kubernetes runs: each service its own process on RabbitMQ and Redis,
plus the WeChat simulator, with one merged log stream and a health-checked start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from libs.common import bus as bus_lib
from libs.common import store as store_lib
from libs.common.observability.logging import configure_service
from libs.common.runner import run as run_loop
from libs.common.runner import run_apps
from libs.common.settings import CommonSettings, SettingsError, load

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
    settings: Mapping[str, CommonSettings], *, stop: asyncio.Event | None = None
) -> None:
    """Run the given services on this loop, sharing one bus and one store, until stopped."""
    first = next(iter(settings.values()))
    mixed = {(s.bus_url, s.store_url) for s in settings.values()}
    if len(mixed) > 1:
        raise SettingsError("services in one process must share WXKF_BUS_URL and WXKF_STORE_URL")
    bus = await bus_lib.connect(first.bus_url)
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
            await run_apps(apps, shutdown_grace_s=grace, stop=stop)
        finally:
            await store.close()
    finally:
        await bus.close()


def run(args: argparse.Namespace) -> int:
    names = selected(args.services)
    try:
        settings = load_settings(names)
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"wxkf: configuration error: {line}", file=sys.stderr)
        return 2
    first = next(iter(settings.values()))
    configure_service(names[0] if len(names) == 1 else "wxkf", first)
    run_loop(run_services(settings))
    return 0


# --- wxkf up ----------------------------------------------------------------------------------

UP_DEFAULTS = {
    "WXKF_BUS_URL": "amqp://guest:guest@127.0.0.1:5672/",
    "WXKF_STORE_URL": "redis://127.0.0.1:6379/0",
}
SIM_PORT = 8090


def up_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment every process of ``wxkf up`` gets: RabbitMQ, Redis, the simulator."""
    from services.simulator.config import DEMO_AES_KEY, DEMO_APPID, DEMO_SECRET, DEMO_TOKEN

    env = dict(environ)
    sim_port = int(env.get("WXKF_SIM_PORT", SIM_PORT))
    defaults = {
        **UP_DEFAULTS,
        "WXKF_APPID": DEMO_APPID,
        "WXKF_APP_SECRET": DEMO_SECRET,
        "WXKF_TOKEN": DEMO_TOKEN,
        "WXKF_AES_KEY": DEMO_AES_KEY,
        "WXKF_WECHAT_API_BASE": f"http://127.0.0.1:{sim_port}",
        "WXKF_MEDIA_URL": "http://127.0.0.1:8084",
        "WXKF_LOG_FORMAT": "console",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    return env


class Child(msgspec.Struct, kw_only=True):
    name: str
    argv: list[str]
    health_url: str
    process: asyncio.subprocess.Process | None = None


def up_children(env: Mapping[str, str]) -> list[Child]:
    python = sys.executable
    sim_port = int(env.get("WXKF_SIM_PORT", SIM_PORT))
    children = [
        Child(
            name="simulator",
            argv=[python, "-m", "services.cli", "sim", "api", "--port", str(sim_port)],
            health_url=f"http://127.0.0.1:{sim_port}/sim/clock",
        )
    ]
    ports = {"ingress": 8080, "router": 8081, "sender": 8082, "media": 8084}
    for name in SERVICES:
        port = int(env.get(f"WXKF_{name.upper()}_PORT", ports[name]))
        children.append(
            Child(
                name=name,
                argv=[python, "-m", f"services.{name}"],
                health_url=f"http://127.0.0.1:{port}/readyz",
            )
        )
    return children


async def _pipe(name: str, stream: asyncio.StreamReader, width: int) -> None:
    prefix = f"{name:<{width}} | ".encode()
    while line := await stream.readline():
        sys.stdout.buffer.write(prefix + line)
        sys.stdout.flush()


async def _wait_ready(child: Child, deadline: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if child.process is not None and child.process.returncode is not None:
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(child.health_url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not become ready at {child.health_url}")
            await asyncio.sleep(0.2)


async def up_processes(
    env: Mapping[str, str], *, stop: asyncio.Event, ready_timeout_s: float = 60.0
) -> int:
    """Start every child, wait until each is ready, run until ``stop``, stop them all."""
    children = up_children(env)
    width = max(len(c.name) for c in children)
    pipes: list[asyncio.Task[None]] = []
    try:
        for child in children:
            child.process = await asyncio.create_subprocess_exec(
                *child.argv,
                env=dict(env),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            assert child.process.stdout is not None
            pipes.append(asyncio.create_task(_pipe(child.name, child.process.stdout, width)))
            # The simulator first, so sender and media find WeChat's API when they start.
            await _wait_ready(child, time.monotonic() + ready_timeout_s)
        print(
            f"wxkf up: {len(children)} processes ready; push URL "
            f"http://127.0.0.1:{env.get('WXKF_INGRESS_PORT', 8080)}/wechat — Ctrl-C stops",
            flush=True,
        )
        exited = [asyncio.create_task(c.process.wait()) for c in children if c.process]
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopping, *exited], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        return 0 if stopping in done else 1
    finally:
        for child in reversed(children):
            if child.process is not None and child.process.returncode is None:
                child.process.send_signal(signal.SIGTERM)
        for child in children:
            if child.process is not None:
                try:
                    await asyncio.wait_for(child.process.wait(), timeout=30)
                except TimeoutError:
                    child.process.kill()
        await asyncio.gather(*pipes, return_exceptions=True)


def up(args: argparse.Namespace) -> int:
    env = up_environment(os.environ)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await up_processes(env, stop=stop)

    try:
        return asyncio.run(main())
    except RuntimeError as exc:
        print(f"wxkf up: {exc}", file=sys.stderr)
        return 1


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
    return "\n".join(out) + "\n"


def config_main(args: argparse.Namespace) -> int:
    sys.stdout.write(configuration_reference())
    return 0
