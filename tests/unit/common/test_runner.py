"""The runner: several apps on one loop, and a graceful stop on SIGTERM.

In-process tests drive :func:`running` and :func:`run_apps` with a stop event; one test runs a
real process and sends it SIGTERM while a request is in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from libs.common.runner import (
    loop_factory,
    run,
    run_apps,
    running,
)
from libs.common.web import add_readiness_check, base_app

ROOT = Path(__file__).resolve().parents[3]
HANG_GUARD_S = 60.0
"""Only so that a hang fails the test instead of stalling the run; not a speed check."""


async def wait_until(check: Callable[[], Awaitable[bool]], *, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


async def refuses(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


def recorder(events: list[str], name: str):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        events.append(f"open {name}")
        yield
        events.append(f"close {name}")

    return ctx


def slow_app(events: list[str], entered: asyncio.Event, release: asyncio.Event) -> web.Application:
    app = base_app("slow")

    async def slow(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        events.append("handler done")
        return web.Response(text="done")

    app.router.add_get("/slow", slow)
    app.cleanup_ctx.append(recorder(events, "slow"))
    return app


async def test_several_apps_each_on_its_own_port_and_one_internal_port_for_all() -> None:
    one, two = base_app("one"), base_app("two")

    async def not_yet() -> None:
        raise RuntimeError("rules not loaded")

    add_readiness_check(two, "rules", not_yet)
    async with (
        running([(one, 0), (two, 0)], shutdown_grace_s=1, internal_port=0) as ports,
        aiohttp.ClientSession() as http,
    ):
        assert len(set(ports)) == 3
        *services, internal = ports
        for port in services:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 404
        async with http.get(f"http://127.0.0.1:{internal}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"http://127.0.0.1:{internal}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["service"] == "two"
        async with http.get(f"http://127.0.0.1:{internal}/metrics") as resp:
            assert "wxkf_http_requests_total" in await resp.text()


async def test_in_flight_request_finishes_before_cleanup() -> None:
    events: list[str] = []
    entered, release, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
    app = slow_app(events, entered, release)
    ports: list[int] = []

    async def serve_until_stopped() -> None:
        async with running([(app, 0)], shutdown_grace_s=30) as bound:
            ports.extend(bound)
            await stop.wait()

    async with asyncio.timeout(HANG_GUARD_S), aiohttp.ClientSession() as http:
        server = asyncio.create_task(serve_until_stopped())
        await wait_until(lambda: asyncio.sleep(0, bool(ports)))
        request = asyncio.create_task(http.get(f"http://127.0.0.1:{ports[0]}/slow"))
        await entered.wait()
        stop.set()
        await wait_until(lambda: refuses(ports[0]))  # no new connections during the grace
        assert events == ["open slow"]  # cleanup waits for the request in flight
        release.set()
        resp = await request
        assert resp.status == 200
        assert await resp.text() == "done"
        await server
    assert events == ["open slow", "handler done", "close slow"]


async def test_the_grace_bounds_the_wait_for_a_request_that_never_ends() -> None:
    events: list[str] = []
    entered, never = asyncio.Event(), asyncio.Event()
    app = slow_app(events, entered, never)
    async with asyncio.timeout(HANG_GUARD_S), aiohttp.ClientSession() as http:
        async with running([(app, 0)], shutdown_grace_s=0.1) as ports:
            request = asyncio.create_task(http.get(f"http://127.0.0.1:{ports[0]}/slow"))
            await entered.wait()
        with pytest.raises(aiohttp.ClientError):
            await request
    assert events == ["open slow", "close slow"]


async def test_apps_are_cleaned_up_last_started_first() -> None:
    events: list[str] = []
    first, second = base_app("first"), base_app("second")
    first.cleanup_ctx.extend([recorder(events, "first.bus"), recorder(events, "first.consumers")])
    second.cleanup_ctx.append(recorder(events, "second.bus"))
    async with running([(first, 0), (second, 0)], shutdown_grace_s=1):
        pass
    assert events == [
        "open first.bus",
        "open first.consumers",
        "open second.bus",
        "close second.bus",
        "close first.consumers",
        "close first.bus",
    ]


async def test_a_failed_start_stops_what_had_started() -> None:
    events: list[str] = []
    good, bad = base_app("good"), base_app("bad")
    good.cleanup_ctx.append(recorder(events, "good"))

    async def broken(app: web.Application) -> AsyncIterator[None]:
        raise ConnectionRefusedError("the broker is down")
        yield  # pragma: no cover - makes this a generator

    bad.cleanup_ctx.extend([recorder(events, "bad.first"), broken])
    with pytest.raises(ConnectionRefusedError, match="broker is down"):
        async with running([(good, 0), (bad, 0)], shutdown_grace_s=1):
            pytest.fail("must not start")
    assert events == ["open good", "open bad.first", "close bad.first", "close good"]


async def test_a_taken_port_fails_the_start_and_stops_the_rest() -> None:
    events: list[str] = []
    holder, second = base_app("holder"), base_app("second")
    second.cleanup_ctx.append(recorder(events, "second"))
    async with running([(holder, 0)], shutdown_grace_s=1) as [port]:
        with pytest.raises(OSError, match="in use"):
            async with running([(second, port)], shutdown_grace_s=1):
                pytest.fail("must not start")
    assert events == ["open second", "close second"]


async def test_a_failing_cleanup_does_not_spare_the_others() -> None:
    events: list[str] = []
    first, second = base_app("first"), base_app("second")
    first.cleanup_ctx.append(recorder(events, "first"))

    async def fails_at_stop(app: web.Application) -> AsyncIterator[None]:
        yield
        raise RuntimeError("close failed")

    second.cleanup_ctx.append(fails_at_stop)
    async with running([(first, 0), (second, 0)], shutdown_grace_s=1):
        pass
    assert events == ["open first", "close first"]


async def test_run_apps_returns_when_stopped() -> None:
    events: list[str] = []
    app = base_app("one")
    app.cleanup_ctx.append(recorder(events, "one"))
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_apps([(app, 0)], host="127.0.0.1", shutdown_grace_s=1, stop=stop)
    )
    await wait_until(lambda: asyncio.sleep(0, events == ["open one"]))
    stop.set()
    async with asyncio.timeout(HANG_GUARD_S):
        await task
    assert events == ["open one", "close one"]


async def test_a_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="shutdown_grace_s"):
        async with running([(base_app("x"), 0)], shutdown_grace_s=-1):
            pass


def as_record(line: bytes) -> dict[str, object]:
    """A JSON log line, or the raw text of anything else the interpreter printed."""
    try:
        record = json.loads(line)
    except ValueError:
        return {"raw": line.decode(errors="replace")}
    return record if isinstance(record, dict) else {"raw": record}


SLOW_SERVICE = textwrap.dedent(
    """
    import asyncio
    import sys
    from pathlib import Path

    from aiohttp import web

    from libs.common.observability.logging import configure
    from libs.common.runner import serve
    from libs.common.web import base_app

    configure("slowpoke", fmt="json", level="info")


    async def slow(request):
        print("slow.started", flush=True)
        release = Path(request.query["release"])
        while not release.exists():
            await asyncio.sleep(0.01)
        print("slow.finished", flush=True)
        return web.Response(text="done")


    async def resources(app):
        yield
        print("cleanup", flush=True)


    app = base_app("slowpoke")
    app.router.add_get("/slow", slow)
    app.cleanup_ctx.append(resources)
    serve([(app, 0)], host="127.0.0.1", shutdown_grace_s=30)
    print("exited", flush=True)
    """
)


class SlowService:
    """The slow service as a process: its port, its log records and what it printed."""

    def __init__(self, proc: asyncio.subprocess.Process, release: Path) -> None:
        self.proc = proc
        self.release = release
        self.records: list[dict[str, object]] = []
        self.port: int | None = None

    @classmethod
    async def start(cls, tmp_path: Path) -> SlowService:
        script = tmp_path / "slow_service.py"
        script.write_text(SLOW_SERVICE)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        service = cls(proc, tmp_path / "release")
        assert proc.stderr is not None
        while service.port is None:
            line = await proc.stderr.readline()
            assert line, "the service ended before it listened"
            record = as_record(line)
            service.records.append(record)
            if record.get("event") == "runner.listening":
                service.port = int(record["port"])  # type: ignore[call-overload]
        return service

    async def slow_request(self, http: aiohttp.ClientSession) -> asyncio.Task[str]:
        """A request that holds the stop until the release file exists."""
        assert self.proc.stdout is not None

        async def get() -> str:
            url = f"http://127.0.0.1:{self.port}/slow"
            async with http.get(url, params={"release": str(self.release)}) as resp:
                assert resp.status == 200
                return await resp.text()

        request = asyncio.create_task(get())
        assert await self.proc.stdout.readline() == b"slow.started\n"
        return request

    async def finish(self) -> tuple[int, str]:
        """The exit code and the rest of stdout; the log records are all in ``records``."""
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        rest, err = await asyncio.gather(self.proc.stdout.read(), self.proc.stderr.read())
        self.records += [as_record(line) for line in err.splitlines()]
        return await self.proc.wait(), rest.decode()

    def events(self) -> list[object]:
        return [r.get("event") for r in self.records if "event" in r]

    def raw(self) -> str:
        return "\n".join(str(r["raw"]) for r in self.records if "raw" in r)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.mark.parametrize(
    "signals",
    [
        [signal.SIGTERM],
        # One Ctrl-C under `wxkf up`: the terminal's SIGINT and up's SIGTERM, either order.
        [signal.SIGINT, signal.SIGTERM],
        [signal.SIGTERM, signal.SIGINT],
    ],
    ids=["sigterm", "terminal-then-up", "up-then-terminal"],
)
async def test_a_stop_lets_the_request_in_flight_finish_then_exits_0(
    tmp_path: Path, signals: list[signal.Signals]
) -> None:
    service = await SlowService.start(tmp_path)
    try:
        async with asyncio.timeout(HANG_GUARD_S), aiohttp.ClientSession() as http:
            request = await service.slow_request(http)
            for signum in signals:
                service.proc.send_signal(signum)
            assert service.port is not None
            await wait_until(lambda: refuses(service.port))  # type: ignore[arg-type]
            service.release.touch()
            assert await request == "done"
            returncode, rest = await service.finish()
    finally:
        await service.kill()
    assert rest.split() == ["slow.finished", "cleanup", "exited"]
    assert returncode == 0
    events = service.events()
    assert events.count("runner.signal") == 1
    assert events.count("runner.stopped") == 1
    assert events.index("runner.signal") < events.index("runner.stopped")
    assert "runner.stopped_at_once" not in events
    assert "Traceback" not in service.raw()
    assert all(r["service"] == "slowpoke" for r in service.records if "event" in r)


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT, signal.SIGINT], [signal.SIGINT, signal.SIGTERM, signal.SIGINT]],
    ids=["ctrl-c-twice", "ctrl-c-twice-under-up"],
)
async def test_the_same_signal_again_stops_at_once_without_a_traceback(
    tmp_path: Path, signals: list[signal.Signals]
) -> None:
    service = await SlowService.start(tmp_path)
    try:
        async with asyncio.timeout(HANG_GUARD_S), aiohttp.ClientSession() as http:
            request = await service.slow_request(http)
            service.proc.send_signal(signals[0])
            assert service.port is not None
            await wait_until(lambda: refuses(service.port))  # type: ignore[arg-type]
            for signum in signals[1:]:
                service.proc.send_signal(signum)
            returncode, rest = await service.finish()
            with pytest.raises(aiohttp.ClientError):
                await request
    finally:
        await service.kill()
    assert returncode == -signals[-1]  # ended by the signal, as without a handler
    assert rest == ""  # neither the request nor the cleanup finished
    events = service.events()
    assert events.count("runner.stopped_at_once") == 1
    assert "runner.stopped" not in events
    assert "Traceback" not in service.raw()


async def test_a_busy_port_is_one_line_naming_port_app_and_variable(tmp_path: Path) -> None:
    script = tmp_path / "busy.py"
    script.write_text(BUSY_PORT_SERVICE)
    async with running([(base_app("holder"), 0)], shutdown_grace_s=1) as [port]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        async with asyncio.timeout(HANG_GUARD_S):
            out, err = await proc.communicate()
    assert proc.returncode == 2
    problems = [line for line in err.decode().splitlines() if not line.startswith("{")]
    assert problems == [
        f"wxkf: port {port} for ingress is already in use on 127.0.0.1; set WXKF_INGRESS_PORT "
        "to a free port (0 picks one)"
    ]
    assert out == b""


BUSY_PORT_SERVICE = textwrap.dedent(
    """
    import sys

    from libs.common.observability.logging import configure
    from libs.common.runner import serve
    from libs.common.web import base_app

    configure("ingress", fmt="json", level="info")
    serve([(base_app("ingress"), int(sys.argv[1]))], host="127.0.0.1", shutdown_grace_s=1)
    """
)


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_serve_runs_on_uvloop_where_it_is_installed() -> None:
    pytest.importorskip("uvloop")
    assert run(_loop_module()).startswith("uvloop")


def test_without_uvloop_the_standard_loop_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry makes ``import uvloop`` raise ImportError, as on a platform without it.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert loop_factory() is None
    assert run(_loop_module()).startswith("asyncio")


async def test_an_app_without_a_port_starts_and_stops_and_is_judged_on_the_internal_port() -> None:
    # A consumer (router, sender): its cleanup contexts run, it listens nowhere of its own,
    # and its readiness is the internal port's.
    events: list[str] = []
    consumer = base_app("consumer")
    consumer.cleanup_ctx.append(recorder(events, "consumer"))

    async def not_yet() -> None:
        raise RuntimeError("queue not declared")

    add_readiness_check(consumer, "queue", not_yet)
    async with (
        running([(consumer, None)], shutdown_grace_s=1, internal_port=0) as ports,
        aiohttp.ClientSession() as http,
    ):
        assert events == ["open consumer"]
        (internal,) = ports
        async with http.get(f"http://127.0.0.1:{internal}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["service"] == "consumer"
    assert events == ["open consumer", "close consumer"]
