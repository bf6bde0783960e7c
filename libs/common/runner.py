"""Run one or more aiohttp apps on one event loop, and stop them gracefully.

On SIGTERM or SIGINT: every listening socket closes at once (no new connections), requests
in flight get up to ``shutdown_grace_s`` to finish, then each app runs its cleanup in reverse
order of start, and each app's cleanup contexts in reverse order of registration (so the
consumers stop before the bus they use is closed). Which later signal stops the process at
once, and which is the same stop arriving twice (a terminal's Ctrl-C and ``wxkf up``'s
SIGTERM), is :mod:`libs.common.stopping`'s. :func:`serve` is the entry points' call; tests
use :func:`running` or :func:`run_apps`.

A port that cannot be bound is a :class:`PortUnavailable` naming the port, the app and the
variable that moves it; :func:`serve` prints it as one line and exits 2.

:func:`serve` runs on uvloop when it can be imported (a dependency wherever it builds), else on
asyncio's own loop: the same code either way, uvloop's loop only spends less per pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import structlog
from aiohttp import web

from libs.common.edge import EDGE, GuardedSite
from libs.common.keys import SERVICE
from libs.common.settings import env_name
from libs.common.stopping import StopSignals
from libs.common.web import internal_app

log = structlog.get_logger(__name__)

AppAndPort = tuple[web.Application, int | None]
"""An app and its port: 0 picks a free one; None, an app that serves nothing of its own (a
consumer: its health, readiness and metrics are the internal port's)."""
T = TypeVar("T")

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a service listens on every interface of its pod
PORT_IN_USE_EXIT = 2


class PortUnavailable(OSError):
    """An app's port cannot be bound (taken by another process, or not allowed)."""

    def __init__(self, app: str, host: str, port: int, cause: OSError) -> None:
        self.app = app
        self.port = port
        self.variable = port_variable(app)
        why = "already in use" if cause.errno == errno.EADDRINUSE else cause.strerror or cause
        self.message = (
            f"port {port} for {app} is {why} on {host}; set {self.variable} to a free port "
            "(0 picks one)"
        )
        super().__init__(cause.errno, self.message)

    def __str__(self) -> str:
        return self.message


def port_variable(app: str) -> str:
    """The variable that sets an app's port: ``WXKF_<APP>_PORT`` (``WXKF_INGRESS_PORT``), and
    ``WXKF_INTERNAL_PORT`` for the internal port of every process."""
    return env_name(f"{app}_port")


INTERNAL = "internal"
"""The name the internal app goes by in the runner's lines and errors."""


def serve(
    apps: Sequence[AppAndPort],
    *,
    host: str = ALL_INTERFACES,
    shutdown_grace_s: float,
    internal_port: int | None = None,
) -> None:
    """Run ``apps`` (one port each; see :data:`AppAndPort`) until SIGTERM/SIGINT, then stop; with
    ``internal_port``, their health, readiness and metrics on it (:func:`internal_app`).

    The process's stop signals are handled from here to its end (:mod:`libs.common.stopping`).
    """
    signals = StopSignals()
    signals.install()
    try:
        run(
            run_apps(
                apps,
                host=host,
                shutdown_grace_s=shutdown_grace_s,
                internal_port=internal_port,
                signals=signals,
            )
        )
    except PortUnavailable as exc:
        print(f"wxkf: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(PORT_IN_USE_EXIT) from None


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it can be imported, else None (asyncio's default loop)."""
    try:
        import uvloop
    except ImportError:  # not built for this platform (Windows): the standard loop serves
        return None
    return uvloop.new_event_loop


async def run_apps(
    apps: Sequence[AppAndPort],
    *,
    host: str = ALL_INTERFACES,
    shutdown_grace_s: float,
    internal_port: int | None = None,
    stop: asyncio.Event | None = None,
    signals: StopSignals | None = None,
) -> None:
    """Run ``apps`` until SIGTERM/SIGINT (or until ``stop`` is set), then stop gracefully.

    ``signals`` installed by the caller for
    the whole process (as :func:`serve` does) stay installed; without them, stop signals are
    handled while the apps run and the previous handlers come back afterwards.
    """
    stop = stop if stop is not None else asyncio.Event()
    scope: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if signals is None:
        signals = StopSignals()
        scope = signals.installed()
    with scope:
        signals.bind(stop)
        async with running(
            apps, host=host, shutdown_grace_s=shutdown_grace_s, internal_port=internal_port
        ):
            await stop.wait()


@contextlib.asynccontextmanager
async def running(
    apps: Sequence[AppAndPort],
    *,
    host: str = "127.0.0.1",
    shutdown_grace_s: float,
    internal_port: int | None = None,
) -> AsyncIterator[list[int]]:
    """Start ``apps``; yields the bound ports of those with a port (in order); stops them all
    gracefully on exit.

    With ``internal_port``, an :func:`internal_app` for them all listens on it too, started
    last (its bound port is the last one yielded). If an app fails to start, the apps already
    started are stopped before the error rises.
    """
    if shutdown_grace_s < 0:
        raise ValueError(f"shutdown_grace_s must be >= 0, got {shutdown_grace_s!r}")
    runners: list[web.AppRunner] = []
    ports: list[int] = []
    internal = None if internal_port is None else internal_app([app for app, _ in apps])
    every = [*apps, *([] if internal is None else [(internal, internal_port or 0)])]
    try:
        for app, port in every:
            name = INTERNAL if app is internal else app.get(SERVICE, "app")
            # The RED metrics and our own request lines replace aiohttp's access log.
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_grace_s)
            runners.append(runner)
            await runner.setup()
            if port is None:  # started (its cleanup contexts ran) but listening nowhere
                log.info("runner.started", app=name)
                continue
            edge = app.get(EDGE)
            site: web.BaseSite = (
                web.TCPSite(runner, host, port)
                if edge is None
                else GuardedSite(runner, host, port, edge)
            )
            try:
                await site.start()
            except OSError as exc:
                raise PortUnavailable(name, host, port, exc) from exc
            bound = int(runner.addresses[0][1])
            ports.append(bound)
            log.info("runner.listening", app=name, host=host, port=bound)
        yield ports
    finally:
        await _stop(runners, shutdown_grace_s)


async def _stop(runners: list[web.AppRunner], grace_s: float) -> None:
    log.debug("runner.stopping", grace_s=grace_s)
    # 1. No new connections anywhere, before waiting on anything.
    for runner in runners:
        for site in list(runner.sites):
            await site.stop()

    # 2. In-flight requests of every app finish, together, within one grace period.
    async def drain(runner: web.AppRunner) -> None:
        server = runner.server
        if server is None:  # its start failed: nothing was served
            return
        server.pre_shutdown()  # closes idle keep-alive connections
        await runner.app.shutdown()
        await server.shutdown(grace_s)

    await asyncio.gather(*(drain(r) for r in runners))

    # 3. Cleanup, last started first; one app's failure does not spare the others theirs.
    for runner in reversed(runners):
        try:
            await runner.app.cleanup()
        except Exception:
            log.exception("runner.cleanup_failed", app=runner.app.get(SERVICE, "app"))
    log.info("runner.stopped")
