"""The processes of ``wxkf up``: started in order, each awaited ready, their lines merged, and
stopped together.

**Stopping.** One Ctrl-C reaches every process twice: the terminal sends SIGINT to the whole
foreground group, and ``wxkf up`` sends each child SIGTERM. Each child takes the two as one
graceful stop (:mod:`libs.common.stopping`): it finishes what it holds and exits 0. A second
Ctrl-C stops them at once. While a child is still starting (importing, reading settings) it
ignores SIGINT, so that a Ctrl-C then ends it by ``wxkf up``'s SIGTERM alone, without a
traceback; its stop handling replaces that as soon as it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

import aiohttp
import msgspec

from libs.common.topology import SERVICES
from services.up.plan import SIMULATOR, Plan

STOP_WAIT_S = 45.0
"""Longer than a service's own grace (``WXKF_SHUTDOWN_GRACE_S``, 20 s) plus its cleanup."""


class Child(msgspec.Struct, kw_only=True):
    name: str
    argv: list[str]
    health_url: str
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


def children(plan: Plan) -> list[Child]:
    """The simulator first, so that sender and media find WeChat's API when they start."""
    python = sys.executable
    sim = [python, "-m", "services.cli", "sim", "api", "--host", plan.host]
    sim += ["--port", str(plan.ports[SIMULATOR]), "--state", str(plan.layout.simulator_state)]
    found = [
        Child(
            name=SIMULATOR,
            argv=sim,
            health_url=plan.url(SIMULATOR, "/sim/clock"),
            env=plan.env_of(SIMULATOR),
        )
    ]
    for name in SERVICES:
        found.append(
            Child(
                name=name,
                argv=[python, "-m", f"services.{name}"],
                health_url=plan.internal_url(name, "/readyz"),
                env=plan.env_of(name),
            )
        )
    return found


def _ignore_sigint() -> None:
    # In the child, before it runs Python: see the module docstring.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
            await asyncio.sleep(0.2)  # polling a starting process, bounded by the deadline


async def _start(
    found: list[Child], plan: Plan, pipes: list[asyncio.Task[None]], ready_s: float
) -> None:
    width = max(len(c.name) for c in found)
    for child in found:
        child.process = await asyncio.create_subprocess_exec(
            *child.argv,
            env=child.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_ignore_sigint,  # runs between fork and exec: one signal call
        )
        assert child.process.stdout is not None
        pipes.append(asyncio.create_task(_pipe(child.name, child.process.stdout, width)))
        await _wait_ready(child, time.monotonic() + ready_s)


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    stopped: bool
    """Asked to stop (not ended by a child that exited or failed to start)."""
    codes: dict[str, int | None]
    """Each child's exit code (negative: ended by that signal; None: never started)."""
    problem: str = ""

    @property
    def clean(self) -> bool:
        return self.stopped and not self.problem and all(c == 0 for c in self.codes.values())

    def lines(self) -> list[str]:
        out = [f"wxkf up: {self.problem}"] if self.problem else []
        unclean = {n: c for n, c in self.codes.items() if c not in (0, None)}
        if self.clean:
            out.append("wxkf up: every process stopped gracefully")
        elif unclean:
            shown = ", ".join(f"{n} {_ended(c)}" for n, c in unclean.items())
            out.append(f"wxkf up: stopped; {shown}")
        return out


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was ended by {signal.Signals(-code).name}"
    return f"exited with code {code}"


async def run(
    plan: Plan,
    *,
    stop: asyncio.Event,
    stop_now: asyncio.Event | None = None,
    ready_timeout_s: float = 60.0,
    on_ready: list[str] | None = None,
) -> Outcome:
    """Start every child, wait until each is ready, run until ``stop`` (or a child ends),
    then stop them all. ``stop_now`` set while they stop passes the stop on once more (each
    child then ends at once). ``on_ready`` lines are printed once all are ready."""
    found = children(plan)
    pipes: list[asyncio.Task[None]] = []
    stopping = asyncio.create_task(stop.wait())
    problem = ""
    try:
        starting = asyncio.create_task(_start(found, plan, pipes, ready_timeout_s))
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await starting
        elif starting.exception() is not None:
            problem = str(starting.exception())
        else:
            for line in on_ready or ():
                print(line, flush=True)
            exited = {asyncio.create_task(c.process.wait()): c.name for c in found if c.process}
            done, _ = await asyncio.wait([stopping, *exited], return_when=asyncio.FIRST_COMPLETED)
            for task, name in exited.items():
                if task in done and not stop.is_set():
                    problem = f"{name} exited with code {task.result()}; stopping the others"
                    break
                task.cancel()
    finally:
        stopping.cancel()
        await _stop_all(found, stop_now)
        await asyncio.gather(*pipes, return_exceptions=True)
    codes = {c.name: c.process.returncode if c.process else None for c in found}
    return Outcome(stopped=stop.is_set(), codes=codes, problem=problem)


async def _stop_all(found: list[Child], stop_now: asyncio.Event | None) -> None:
    def signal_all() -> None:
        for child in reversed(found):
            if child.running and child.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)

    signal_all()
    waiting = [c.process.wait() for c in found if c.process is not None]
    again = asyncio.create_task(stop_now.wait()) if stop_now is not None else None
    if again is not None:
        again.add_done_callback(lambda t: None if t.cancelled() else signal_all())
    try:
        await asyncio.wait_for(asyncio.gather(*waiting), timeout=STOP_WAIT_S)
    except TimeoutError:
        for child in found:
            if child.running and child.process is not None:
                child.process.kill()
                await child.process.wait()
    finally:
        if again is not None:
            again.cancel()
