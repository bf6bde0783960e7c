"""A running history service for the integration tests, and what they look at: its HTTP API,
its SQLite file (read directly, not through the service), its log lines and metrics."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
from aiohttp import web

from examples.extension.app import create_app
from examples.extension.queues import history_queues
from examples.extension.settings import HistorySettings
from libs.common.bus import Bus
from libs.common.runner import running
from libs.common.settings import load
from tests.support.bus_harness import Harness
from tests.support.metrics import sample
from tests.support.waiting import eventually
from tests.unit.examples.history_helpers import APPID

GRACE_S = 30.0
LogLines = list[MutableMapping[str, Any]]


def queue_name() -> str:
    """A test's own name for the history's queues."""
    return "wxkf.ext.history.t" + uuid.uuid4().hex[:10]


async def delete_queues(url: str, name: str) -> None:
    """Remove the history's queues of that name (and their delay and dead-letter queues)."""
    connection = await aio_pika.connect(url)
    async with connection, connection.channel() as channel:
        for spec in history_queues(name):
            delays = [spec.delay_queue(d) for d in spec.delay_steps()]
            for queue in (spec.name, spec.dlq, *delays):
                await channel.queue_delete(queue)


class History:
    """One history service instance: its app, its bus client, its HTTP address."""

    def __init__(self, app: web.Application, bus: Bus, port: int, http: aiohttp.ClientSession):
        self.app = app
        self.bus = bus
        self.base = f"http://127.0.0.1:{port}"
        self.http = http

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.base + path) as response:
            return response.status, await response.json()

    async def entries(self, openid: str, count: int) -> list[dict[str, Any]]:
        """The conversation once it has ``count`` entries (polled)."""

        async def probe() -> list[dict[str, Any]]:
            status, body = await self.get(f"/conversations/{openid}?limit=1000")
            return body["entries"] if status == 200 else []

        return await eventually(probe, lambda e: len(e) >= count, what=f"{count} entries")


@contextlib.asynccontextmanager
async def history(
    harness: Harness,
    db: Path,
    queue: str,
    *,
    bus_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[History]:
    """Start a history service on a bus client of its own; stop it gracefully on exit.

    ``overrides`` are settings; ``bus_options`` go to the bus client.
    """
    bus = await harness.bus(**(bus_options or {}))
    settings = load(
        HistorySettings, {}, appid=APPID, history_db=str(db), history_queue=queue, **overrides
    )
    app = create_app(settings, bus=bus)
    async with (
        aiohttp.ClientSession() as http,
        running([(app, 0)], shutdown_grace_s=GRACE_S) as ports,
    ):
        yield History(app, bus, ports[0], http)


def rows(db: Path, *, id_: str | None = None) -> int:
    """Rows in the SQLite file with this id, or all of them."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        if id_ is None:
            (count,) = conn.execute("SELECT COUNT(*) FROM history").fetchone()
        else:
            (count,) = conn.execute("SELECT COUNT(*) FROM history WHERE id = ?", (id_,)).fetchone()
    return int(count)


def ids_of(db: Path, openid: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        found = conn.execute("SELECT id FROM history WHERE openid = ?", (openid,)).fetchall()
    return [row[0] for row in found]


def writes_in_flight() -> float:
    return sample("wxkf_history_writes_in_flight")


def lines(logs: LogLines, event: str, **fields: Any) -> LogLines:
    return [
        line
        for line in logs
        if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
    ]


def first_index(logs: LogLines, event: str, **fields: Any) -> int:
    for index, line in enumerate(logs):
        if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
            return index
    seen = [line.get("event") for line in logs]
    raise AssertionError(f"no {event} line with {fields} among {seen}")


class WriteLock:
    """Another process holding SQLite's write lock on the history file (as a backup might)."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None)

    def __enter__(self) -> WriteLock:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.conn.close()


def unique(items: Iterable[str]) -> bool:
    seen = list(items)
    return len(seen) == len(set(seen))
