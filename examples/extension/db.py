"""The history in SQLite: one table, one connection, one thread.

``sqlite3`` blocks, so every call runs on a single worker thread that owns the connection;
the event loop only awaits it. One thread also means one writer, which is what SQLite wants.
Each write is its own transaction, committed (``synchronous=FULL``) before :meth:`add`
returns, so a delivery is acked only once its record would survive a crash.

Idempotency is the table's ``UNIQUE`` constraint on the message id: a redelivered message
(the bus delivers at least once) finds its id taken and is not stored again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import msgspec
import structlog

from examples.extension.errors import DatabaseError
from examples.extension.records import Kind, Record

log = structlog.get_logger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1
"""Kept in SQLite's ``user_version``; a file from a newer version is refused, not altered."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    seq            INTEGER PRIMARY KEY,  -- arrival order: breaks ties between equal times
    id             TEXT NOT NULL UNIQUE, -- the message id: a redelivery is stored once
    appid          TEXT NOT NULL,
    openid         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    type           TEXT NOT NULL,
    routing_key    TEXT NOT NULL,
    time_ms        INTEGER NOT NULL,
    correlation_id TEXT NOT NULL,
    command_id     TEXT,                 -- outcomes only: the command they report on
    body           TEXT NOT NULL         -- the message as JSON
);
CREATE INDEX IF NOT EXISTS history_by_user ON history (appid, openid, time_ms, seq);
CREATE INDEX IF NOT EXISTS history_by_command ON history (command_id)
    WHERE command_id IS NOT NULL;
"""

_INSERT = """
INSERT INTO history
    (id, appid, openid, kind, type, routing_key, time_ms, correlation_id, command_id, body)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING
"""

# A reply carries its latest outcome; an outcome whose reply is stored is shown there, not
# on its own (one whose command never reached the history still is).
_PAGE = """
SELECT e.seq, e.time_ms, e.id, e.kind, e.type, e.routing_key, e.correlation_id, e.body,
       CASE WHEN e.kind IN ('reply', 'typing') THEN (
           SELECT o.body FROM history AS o
           WHERE o.command_id = e.id
           ORDER BY o.time_ms DESC, o.seq DESC
           LIMIT 1
       ) END
FROM history AS e
WHERE e.appid = ? AND e.openid = ?
  AND (e.time_ms > ? OR (e.time_ms = ? AND e.seq > ?))
  AND NOT (
      e.kind = 'outcome'
      AND EXISTS (
          SELECT 1 FROM history AS c
          WHERE c.id = e.command_id AND c.kind IN ('reply', 'typing')
      )
  )
ORDER BY e.time_ms, e.seq
LIMIT ?
"""


class Cursor(msgspec.Struct, frozen=True, kw_only=True):
    """A position in one conversation: entries strictly after it come next."""

    time_ms: int
    seq: int

    def token(self) -> str:
        return f"{self.time_ms}.{self.seq}"


START = Cursor(time_ms=-(2**63), seq=-1)


class Row(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    time_ms: int
    id: str
    kind: Kind
    type: str
    routing_key: str
    correlation_id: str
    body: str
    outcome: str | None
    """For a reply or typing command: the latest outcome fact, as JSON; None while pending."""


class Page(msgspec.Struct, frozen=True, kw_only=True):
    rows: list[Row]
    next: Cursor | None
    """Where the following page starts; None when this page is the last one for now."""


class HistoryDb:
    """The history database; build it with :meth:`open`, end it with :meth:`close`."""

    def __init__(self, path: str, *, busy_timeout_s: float) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wxkf-history-db")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: str, *, busy_timeout_s: float = 5.0) -> HistoryDb:
        """Open (or create) the database at ``path``; :class:`DatabaseError` if it cannot.

        A write waits up to ``busy_timeout_s`` for a lock held by another connection.
        """
        if busy_timeout_s <= 0:
            raise ValueError(f"busy_timeout_s must be positive, got {busy_timeout_s!r}")
        db = cls(path, busy_timeout_s=busy_timeout_s)
        try:
            await db._run(db._connect)
        except DatabaseError:
            await db.close()
            raise
        log.info("history.db_opened", path=path)
        return db

    async def add(self, record: Record) -> bool:
        """Store ``record``; False when a record with its id was stored before."""
        return await self._run(self._insert, record)

    async def conversation(
        self, appid: str, openid: str, *, after: Cursor = START, limit: int
    ) -> Page:
        """Up to ``limit`` entries of one user's conversation after ``after``, oldest first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        rows = await self._run(self._page, appid, openid, after, limit)
        last = rows[-1] if len(rows) == limit else None
        next_cursor = Cursor(time_ms=last.time_ms, seq=last.seq) if last else None
        return Page(rows=rows, next=next_cursor)

    async def ping(self) -> None:
        """Raise :class:`DatabaseError` unless the database answers now."""
        await self._run(self._select_one)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued behind whatever is still running, so no write is cut short.
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._disconnect)
        except sqlite3.Error as exc:
            log.warning("history.db_close_failed", error=str(exc))
        self._executor.shutdown(wait=False)
        log.info("history.db_closed")

    # -- on the database thread ---------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise DatabaseError("the history database is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.path}: {type(exc).__name__}: {exc}") from exc

    def _connect(self) -> None:
        # Autocommit: each statement is its own transaction, committed when it returns.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"made by a newer version (schema {version}; this one knows {SCHEMA_VERSION})"
                )
            conn.execute(f"PRAGMA busy_timeout = {round(self.busy_timeout_s * 1000)}")
            # WAL lets readers (the sqlite3 CLI, a backup) look while the service writes.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("not connected")
        return self._conn

    def _insert(self, r: Record) -> bool:
        cur = self._db().execute(
            _INSERT,
            (
                r.id,
                r.appid,
                r.openid,
                r.kind,
                r.type,
                r.routing_key,
                r.time_ms,
                r.correlation_id,
                r.command_id,
                r.body,
            ),
        )
        return cur.rowcount == 1

    def _page(self, appid: str, openid: str, after: Cursor, limit: int) -> list[Row]:
        cur = self._db().execute(
            _PAGE, (appid, openid, after.time_ms, after.time_ms, after.seq, limit)
        )
        return [
            Row(
                seq=seq,
                time_ms=time_ms,
                id=id_,
                kind=kind,
                type=type_,
                routing_key=key,
                correlation_id=correlation_id,
                body=body,
                outcome=outcome,
            )
            for (seq, time_ms, id_, kind, type_, key, correlation_id, body, outcome) in cur
        ]

    def _select_one(self) -> None:
        self._db().execute("SELECT 1").fetchone()
