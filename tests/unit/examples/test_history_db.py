"""The SQLite history: stored once by id, read back in time order with outcomes folded in."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from history_helpers import APPID, T0, decision, new_openid, reply, sent, text, unknown

from examples.extension.db import SCHEMA_VERSION, START, Cursor, HistoryDb
from examples.extension.errors import DatabaseError
from examples.extension.records import record_of
from libs.common.schemas import AnyMessage


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "history.db")


@pytest.fixture
async def db(path: str) -> AsyncIterator[HistoryDb]:
    opened = await HistoryDb.open(path)
    try:
        yield opened
    finally:
        await opened.close()


async def add(db: HistoryDb, *messages: AnyMessage) -> list[bool]:
    return [await db.add(record_of(m)) for m in messages]


def rows_with_id(path: str, id_: str) -> int:
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM history WHERE id = ?", (id_,)).fetchone()
    return int(count)


async def test_a_message_is_stored_once_by_its_id(db: HistoryDb, path: str) -> None:
    msg = text(new_openid())
    assert await add(db, msg, msg, msg) == [True, False, False]
    assert rows_with_id(path, msg.id) == 1


async def test_same_id_with_another_body_keeps_the_first(db: HistoryDb, path: str) -> None:
    first = text(new_openid(), "first")
    again = msgspec.structs.replace(first, content="second")
    assert await add(db, first, again) == [True, False]
    page = await db.conversation(APPID, first.openid, limit=10)
    assert [msgspec.json.decode(r.body)["content"] for r in page.rows] == ["first"]


async def test_conversation_is_in_time_order_then_arrival(db: HistoryDb) -> None:
    openid = new_openid()
    a, b = text(openid, "a", at=T0 + 10), text(openid, "b", at=T0 + 30)
    tie_1, tie_2 = text(openid, "tie-1", at=T0 + 20), text(openid, "tie-2", at=T0 + 20)
    await add(db, b, tie_1, a, tie_2)
    page = await db.conversation(APPID, openid, limit=10)
    contents = [msgspec.json.decode(r.body)["content"] for r in page.rows]
    assert contents == ["a", "tie-1", "tie-2", "b"]
    assert page.next is None


async def test_replies_carry_their_outcome_and_outcomes_are_not_repeated(db: HistoryDb) -> None:
    openid = new_openid()
    msg = text(openid, at=T0)
    first, second = reply(msg, "one", at=T0 + 2, total=2), reply(msg, "two", at=T0 + 3, seq=1)
    await add(db, sent(first, at=T0 + 5), second, decision(msg, at=T0 + 1), first, msg)
    page = await db.conversation(APPID, openid, limit=10)
    assert [r.kind for r in page.rows] == ["message", "decision", "reply", "reply"]
    outcome = page.rows[2].outcome
    assert outcome is not None
    assert msgspec.json.decode(outcome)["command_id"] == first.id
    assert page.rows[3].outcome is None  # no outcome yet: pending


async def test_an_outcome_without_its_command_is_shown_on_its_own(db: HistoryDb) -> None:
    openid = new_openid()
    orphan = sent(reply(text(openid), "never seen", at=T0 + 1), at=T0 + 2)
    await add(db, orphan)
    page = await db.conversation(APPID, openid, limit=10)
    assert [(r.kind, r.id) for r in page.rows] == [("outcome", orphan.id)]


async def test_only_this_users_conversation_in_this_app(db: HistoryDb) -> None:
    mine, theirs = new_openid(), new_openid()
    other_app = msgspec.structs.replace(text(mine, "other app"), appid="wx00000000000000e2")
    await add(db, text(mine, "mine"), text(theirs, "theirs"), other_app)
    page = await db.conversation(APPID, mine, limit=10)
    assert [msgspec.json.decode(r.body)["content"] for r in page.rows] == ["mine"]
    other = await db.conversation("wx00000000000000e2", mine, limit=10)
    assert [r.id for r in other.rows] == [other_app.id]


async def test_pages_cover_the_conversation_once(db: HistoryDb) -> None:
    openid = new_openid()
    messages = [text(openid, str(i), at=T0 + i // 2) for i in range(7)]  # with ties in time
    await add(db, *messages)
    seen: list[str] = []
    after: Cursor = START
    pages = 0
    while True:
        page = await db.conversation(APPID, openid, after=after, limit=3)
        seen += [r.id for r in page.rows]
        pages += 1
        if page.next is None:
            break
        after = page.next
    assert seen == [m.id for m in messages]
    assert pages == 3


async def test_a_full_last_page_is_followed_by_an_empty_one(db: HistoryDb) -> None:
    openid = new_openid()
    await add(db, text(openid, "1", at=T0), text(openid, "2", at=T0 + 1))
    page = await db.conversation(APPID, openid, limit=2)
    assert page.next == Cursor(time_ms=T0 + 1, seq=page.rows[-1].seq)
    rest = await db.conversation(APPID, openid, after=page.next, limit=2)
    assert (rest.rows, rest.next) == ([], None)


async def test_unknown_type_is_stored_with_its_fields(db: HistoryDb) -> None:
    msg = unknown(new_openid(), msg_type="voice")
    await add(db, msg)
    (row,) = (await db.conversation(APPID, msg.openid, limit=10)).rows
    assert (row.type, row.routing_key) == ("msg.other", "msg.voice")
    assert msgspec.json.decode(row.body)["fields"]["MediaId"] == "m-voice-1"


async def test_the_history_survives_a_restart(path: str) -> None:
    msg = text(new_openid())
    first = await HistoryDb.open(path)
    await add(first, msg)
    await first.close()
    second = await HistoryDb.open(path)
    try:
        assert await add(second, msg) == [False]
        assert len((await second.conversation(APPID, msg.openid, limit=10)).rows) == 1
    finally:
        await second.close()


async def test_in_memory_database_works() -> None:
    db = await HistoryDb.open(":memory:")
    try:
        msg = text(new_openid())
        assert await add(db, msg, msg) == [True, False]
        await db.ping()
    finally:
        await db.close()


async def test_a_file_from_a_newer_version_is_refused_untouched(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(DatabaseError, match="newer version"):
        await HistoryDb.open(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


async def test_a_path_that_cannot_be_opened_is_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="unable to open"):
        await HistoryDb.open(str(tmp_path / "missing" / "history.db"))


async def test_a_file_that_is_not_a_database_is_a_database_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseError, match="not a database"):
        await HistoryDb.open(str(junk))


async def test_a_write_blocked_past_the_busy_timeout_is_a_database_error(path: str) -> None:
    db = await HistoryDb.open(path, busy_timeout_s=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        msg = text(new_openid())
        with pytest.raises(DatabaseError, match="locked"):
            await add(db, msg)
        holder.execute("ROLLBACK")
        assert await add(db, msg) == [True]  # nothing half-written stands in the way
    finally:
        holder.close()
        await db.close()


async def test_a_closed_database_refuses_work(path: str) -> None:
    db = await HistoryDb.open(path)
    await db.close()
    await db.close()  # closing twice is harmless
    with pytest.raises(DatabaseError, match="closed"):
        await db.ping()
    with pytest.raises(DatabaseError, match="closed"):
        await add(db, text(new_openid()))


async def test_bad_arguments_are_value_errors(db: HistoryDb, path: str) -> None:
    with pytest.raises(ValueError, match="limit"):
        await db.conversation(APPID, new_openid(), limit=0)
    with pytest.raises(ValueError, match="busy_timeout_s"):
        await HistoryDb.open(path, busy_timeout_s=0)
