"""The runner: several apps on one loop, and a graceful stop on SIGTERM.

In-process tests drive :func:`running` and :func:`run_apps` with a stop event; one test runs a
real process and sends it SIGTERM while a request is in flight.
"""

from __future__ import annotations

import asyncio
import gc
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
    GC_YOUNG_THRESHOLD,
    loop_factory,
    run,
    run_apps,
    running,
    settle_heap,
)
from libs.common.web import base_app

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


async def test_several_apps_each_on_its_own_port() -> None:
    apps = [(base_app("one"), 0), (base_app("two"), 0)]
    async with (
        running(apps, shutdown_grace_s=1) as ports,
        aiohttp.ClientSession() as http,
    ):
        assert len(set(ports)) == 2
        for port in ports:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200


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


async def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    script = tmp_path / "slow_service.py"
    script.write_text(SLOW_SERVICE)
    release = tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    log_lines: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            port = None
            while port is None:
                line = await proc.stderr.readline()
                assert line, "the service ended before it listened"
                record = as_record(line)
                log_lines.append(record)
                if record.get("event") == "runner.listening":
                    port = int(record["port"])  # type: ignore[call-overload]

            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{port}/slow"
                request = asyncio.create_task(http.get(url, params={"release": str(release)}))
                assert await proc.stdout.readline() == b"slow.started\n"
                proc.send_signal(signal.SIGTERM)
                await wait_until(lambda: refuses(port))
                release.touch()
                resp = await request
                assert resp.status == 200
                assert await resp.text() == "done"

            rest = await proc.stdout.read()
            returncode = await proc.wait()
            log_lines += [as_record(line) for line in (await proc.stderr.read()).splitlines()]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rest.decode().split() == ["slow.finished", "cleanup", "exited"]
    assert returncode == 0
    ours = [r for r in log_lines if "event" in r]
    events = [r["event"] for r in ours]
    assert events.index("runner.signal") < events.index("runner.stopped")
    assert all(r["service"] == "slowpoke" for r in ours)


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


GC_SERVICE = textwrap.dedent(
    """
    import gc

    from aiohttp import web

    from libs.common.observability.logging import configure
    from libs.common.runner import serve
    from libs.common.web import base_app

    configure("gcpoke", fmt="json", level="info")


    async def heap(request):
        return web.json_response(
            {"frozen": gc.get_freeze_count(), "young": gc.get_threshold()[0]}
        )


    app = base_app("gcpoke")
    app.router.add_get("/heap", heap)
    serve([(app, 0)], host="127.0.0.1", shutdown_grace_s=5)
    """
)


async def test_serve_freezes_the_start_up_heap_once_the_apps_listen(tmp_path: Path) -> None:
    script = tmp_path / "gc_service.py"
    script.write_text(GC_SERVICE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stderr=asyncio.subprocess.PIPE, env=env
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            port = None
            while port is None:
                line = await proc.stderr.readline()
                assert line, "the service ended before it listened"
                record = as_record(line)
                if record.get("event") == "runner.listening":
                    port = int(record["port"])  # type: ignore[call-overload]
            url = f"http://127.0.0.1:{port}/heap"
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                heap = await resp.json()
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert heap["frozen"] > 0
    assert heap["young"] == GC_YOUNG_THRESHOLD


def test_settle_heap_freezes_what_exists_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
