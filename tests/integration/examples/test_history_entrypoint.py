"""``python -m examples.extension`` as a process: configured by ``WXKF_*``, on RabbitMQ,
serving the read API, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from libs.common.bus.amqp import AmqpBus
from tests.integration.examples.history_rig import delete_queues, queue_name, rows
from tests.support.waiting import eventually
from tests.unit.examples.history_helpers import APPID, new_openid, text

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration


class Process:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            text = line.decode("utf-8", "replace").strip()
            self.raw.append(text)
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(text))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]

    async def finish(self) -> int:
        code = await eventually(lambda: self.proc.returncode, lambda rc: rc is not None)
        await self._reader
        return int(code)


@contextlib.asynccontextmanager
async def started(env: dict[str, str]) -> AsyncIterator[Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.extension",
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("WXKF_")} | env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    process = Process(proc)
    try:
        yield process
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def queue(amqp_url: str) -> AsyncIterator[str]:
    name = queue_name()
    yield name
    await delete_queues(amqp_url, name)


async def test_the_entry_point_serves_and_stops_on_sigterm(
    amqp_url: str, queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "history.db"
    env = {
        "WXKF_APPID": APPID,
        "WXKF_BUS_URL": amqp_url,
        "WXKF_HISTORY_DB": str(db),
        "WXKF_HISTORY_PORT": "0",
        "WXKF_INTERNAL_PORT": "0",
        "WXKF_HISTORY_QUEUE": queue,
        "WXKF_LOG_FORMAT": "json",
    }
    msg = text(new_openid(), "你好")
    async with started(env) as process:
        listening = await eventually(
            lambda: process.events("runner.listening"),
            lambda found: len(found) == 2,
            what="the service and its internal port listening",
        )
        base = f"http://127.0.0.1:{listening[0]['port']}"
        internal = f"http://127.0.0.1:{listening[1]['port']}"
        bus = await AmqpBus.connect(amqp_url)
        try:
            await bus.publish(msg)
        finally:
            await bus.close()
        async with aiohttp.ClientSession() as http:

            async def conversation() -> tuple[int, Any]:
                async with http.get(f"{base}/conversations/{msg.openid}") as response:
                    return response.status, await response.json()

            _, body = await eventually(conversation, lambda r: r[0] == 200)
            async with http.get(f"{internal}/readyz") as response:
                assert response.status == 200
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 404  # the API's port serves the API only
        assert [e["id"] for e in body["entries"]] == [msg.id]
        process.proc.send_signal(signal.SIGTERM)
        assert await process.finish() == 0
    assert process.events("runner.stopped"), process.raw[-5:]
    assert process.events("history.db_closed")
    # Logs name the user only by hash, and never what they said.
    assert not [line for line in process.raw if msg.openid in line or "你好" in line]
    assert rows(db, id_=msg.id) == 1


async def test_a_missing_setting_stops_the_process_with_its_name(tmp_path: Path) -> None:
    async with started({"WXKF_APPID": APPID}) as process:
        assert await process.finish() == 2
    assert process.raw == ["wxkf: configuration error: WXKF_HISTORY_DB is required but not set"]
