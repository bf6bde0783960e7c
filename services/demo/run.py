"""Starting the demo: ports, files and logging, the simulator and the four services; then the
script, the summary, and serving until Ctrl-C.

The services run through :func:`services.launcher.run_services`, exactly as ``wxkf run all``
runs them, on a ``memory://`` bus and store of their own. The simulator serves WeChat's API
on its own port in the same process, and sender and media call it there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import re
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp
import msgspec
import structlog

from libs.common import bus as bus_lib
from libs.common.observability.logging import configure
from libs.common.settings import CommonSettings, SettingsError
from libs.common.topology import SERVICES, Service
from services.composition import load_settings
from services.demo import refusals, render, script
from services.demo.errors import DemoError, PortBusy
from services.demo.observer import Observer
from services.demo.ports import busy_message, claim
from services.demo.settings import load_demo
from services.demo.stage import Stage
from services.demo.wire import Wire
from services.launcher import run_services
from services.shipped_images import write_assets
from services.simulator.app import create_app as create_sim
from services.simulator.app import running
from services.simulator.clock import SimClock
from services.simulator.config import (
    DEMO_AES_KEY,
    DEMO_APPID,
    DEMO_GH_ID,
    DEMO_OPENID,
    DEMO_SECRET,
    DEMO_TOKEN,
    SimConfig,
)
from services.simulator.pusher import Pusher
from services.simulator.state import SimState

log = structlog.get_logger(__name__)

READY_DEADLINE_S = 60.0
SHUTDOWN_GRACE_S = 5.0
"""Ctrl-C should end the demo promptly; its requests are local and short."""

Say = Callable[[list[str]], None]


class Layout(msgspec.Struct, frozen=True, kw_only=True):
    """Where the demo's files go."""

    directory: Path
    log: Path
    """The services' log (JSON lines)."""
    assets: Path
    """The media service's asset directory, with the images the rules name."""


def prepare(demo_dir: str) -> Layout:
    directory = Path(demo_dir) if demo_dir else Path(tempfile.mkdtemp(prefix="wxkf-demo-"))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        assets = directory / "assets"
        write_assets(assets)
    except OSError as exc:
        raise DemoError(f"cannot write the demo's files in {directory}: {exc.strerror}") from None
    return Layout(directory=directory, log=directory / "services.log", assets=assets)


def service_settings(
    ports: Mapping[str, int], sim_url: str, layout: Layout, memory_url: str, log_level: str
) -> dict[Service, CommonSettings]:
    """The four services' settings: the demo credentials, memory://, the simulator's API.

    The environment is not read: the demo is the same on every machine.
    """
    return load_settings(
        SERVICES,
        {},
        appid=DEMO_APPID,
        app_secret=DEMO_SECRET,
        token=DEMO_TOKEN,
        aes_key=DEMO_AES_KEY,
        push_mode="safe",
        push_format="xml",
        bus_url=memory_url,
        store_url=memory_url,
        wechat_api_base=sim_url,
        media_url=f"http://127.0.0.1:{ports['media']}",
        assets_dir=str(layout.assets),
        ingress_port=ports["ingress"],
        media_port=ports["media"],
        internal_port=ports["internal"],
        media_open=True,  # one process on loopback, the demo credentials
        log_format="json",
        log_level=log_level,
        shutdown_grace_s=SHUTDOWN_GRACE_S,
    )


async def ready(ports: Mapping[str, int], services: asyncio.Task[None], log: Path) -> None:
    """Every service is ready (``/readyz`` of the internal port, for all four of them); or the
    reason they never will be."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_DEADLINE_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if services.done():
                raise _stopped(services, ports, log)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"http://127.0.0.1:{ports['internal']}/readyz") as response:
                    if response.status == 200:
                        return
            if loop.time() > deadline:
                raise DemoError(f"the services were not ready in time; see {log}")
            # Polling a starting server, not waiting out a condition.
            await asyncio.sleep(0.1)


def _stopped(services: asyncio.Task[None], ports: Mapping[str, int], log: Path) -> DemoError:
    exc = None if services.cancelled() else services.exception()
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        # Taken between the check and the start: say which, as the check would have.
        # aiohttp names the address: "... bind on address ('0.0.0.0', 18080): ...".
        found = re.search(r"', (\d+)\)", str(exc))
        port = int(found.group(1)) if found else None
        taken = next((name for name, p in ports.items() if p == port), None)
        if taken is not None and port is not None:
            return PortBusy(busy_message(taken, port, exc))
        return PortBusy(f"a port of the demo became busy while it started: {exc}")
    return DemoError(f"the services stopped while starting ({exc!r}); see {log}")


async def play_demo(
    ports: Mapping[str, int],
    layout: Layout,
    *,
    exit_after: bool,
    say: Say,
    log_level: str = "info",
    sim: SimState | None = None,
) -> int:
    """Start everything, play the script, then serve until stopped (or end, ``exit_after``).

    Returns 0 when every step had its expected outcome, 1 when one did not, 130 when the
    services were stopped (Ctrl-C) before the script ended. ``sim`` lets a test bring a
    simulated WeChat of its own (e.g. with faults planned).
    """
    state = sim or SimState(SimConfig(), clock=SimClock())
    memory_url = f"memory://wxkf-demo-{uuid.uuid4().hex[:12]}"
    async with contextlib.AsyncExitStack() as stack:
        try:
            sim_url = await stack.enter_async_context(
                running(create_sim(state=state), port=ports["simulator"])
            )
        except OSError as exc:
            raise PortBusy(busy_message("simulator", ports["simulator"], exc)) from None
        settings = service_settings(ports, sim_url, layout, memory_url, log_level)
        stop = asyncio.Event()
        services = asyncio.create_task(run_services(settings, stop=stop))
        try:
            await ready(ports, services, layout.log)
            bus = await bus_lib.connect(memory_url)
            stack.push_async_callback(bus.close)
            observer = Observer(bus)
            await observer.start()
            say(render.header(str(layout.log)))
            pusher = Pusher(
                f"http://127.0.0.1:{ports['ingress']}/wechat",
                token=DEMO_TOKEN,
                appid=DEMO_APPID,
                aes_key=DEMO_AES_KEY,
                mode="safe",
                fmt="xml",
                sim=state,
            )
            stack.push_async_callback(pusher.close)
            stage = Stage(
                wire=Wire(pusher, state),
                sim=state,
                observer=observer,
                bus=bus,
                openid=DEMO_OPENID,
                appid=DEMO_APPID,
                gh_id=DEMO_GH_ID,
            )
            total = len(script.STEPS)
            playing = asyncio.create_task(
                script.play(stage, lambda result: say(render.step(result, total)))
            )
            done, _ = await asyncio.wait({playing, services}, return_when=asyncio.FIRST_COMPLETED)
            if playing not in done:
                playing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await playing
                say(["The services stopped before the script ended."])
                return 130
            results = playing.result()
            passed = len(results) == total and all(r.ok for r in results)
            say(render.summary(results, total))
            code = 0 if passed else 1
            if exit_after:
                say(render.where(ports, str(layout.log), serving=False))
                return code
            say(render.where(ports, str(layout.log), serving=True))
            observer.listeners.append(render.Live(lambda text: say([text])))
            stack.callback(refusals.detach, refusals.attach(lambda text: say([text])))
            try:
                await services
            except Exception:  # the demo's edge: say where to look, keep the traceback
                log.exception("demo.services_failed")
                say([f"The services stopped on an error; see {layout.log}"])
                return 1
            return code
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await services


def main(args: argparse.Namespace) -> int:
    try:
        settings = load_demo()
    except SettingsError as exc:
        print(f"wxkf demo: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        ports = claim(settings.ports())
        layout = prepare(settings.demo_dir)
    except DemoError as exc:
        print(f"wxkf demo: {exc}", file=sys.stderr)
        return 2

    def say(lines: list[str]) -> None:
        sys.stdout.write("".join(text + "\n" for text in lines))
        sys.stdout.flush()

    with layout.log.open("a", encoding="utf-8") as log_file:
        # Every service logs to the file; the console shows the conversation only.
        configure("wxkf", fmt="json", level=settings.log_level, stream=log_file)
        try:
            return asyncio.run(
                play_demo(
                    ports,
                    layout,
                    exit_after=bool(args.exit),
                    say=say,
                    log_level=settings.log_level,
                )
            )
        except DemoError as exc:
            print(f"wxkf demo: {exc}", file=sys.stderr)
            return 2
