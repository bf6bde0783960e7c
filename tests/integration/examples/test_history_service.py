"""The history extension against the bus: each test runs on ``memory://`` and on RabbitMQ.

Messages are published as the core services publish them (events and facts on ``kf.events``,
commands on ``kf.commands``), or as raw JSON bytes as a producer in another language would.
What was stored is read from the SQLite file itself, and through ``GET /conversations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from libs.common.schemas import encode
from libs.common.topology import EVENTS
from tests.integration.examples.history_rig import (
    WriteLock,
    first_index,
    history,
    ids_of,
    lines,
    rows,
    unique,
    writes_in_flight,
)
from tests.support.bus_harness import Harness, wait_depth
from tests.support.waiting import eventually
from tests.unit.examples.history_helpers import (
    APPID,
    GH,
    T0,
    archived,
    decision,
    entered,
    new_openid,
    other_event,
    rejected,
    reply,
    sent,
    text,
    typing,
    unknown,
)

pytestmark = pytest.mark.integration


async def test_a_conversation_is_stored_once_each_and_read_in_time_order(
    harness: Harness, queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "history.db"
    openid = new_openid()
    came_in = entered(openid, at=T0)
    asked = text(openid, "营业时间?", at=T0 + 1000)
    decided = decision(asked, at=T0 + 1010)
    shown = typing(asked, at=T0 + 1015)
    first = reply(asked, "9:00-21:00", at=T0 + 1020, total=2)
    second = reply(asked, "欢迎光临", at=T0 + 1021, seq=1, total=2)
    delivered, refused = sent(first, at=T0 + 1500), rejected(second, at=T0 + 1600)
    voice = unknown(openid, at=T0 + 2000, msg_type="voice")
    saved = archived(asked, at=T0 + 3000)
    probe = other_event(openid, at=T0 + 4000)
    messages = [came_in, asked, decided, shown, first, second, delivered, refused, voice, saved]
    messages.append(probe)
    publisher = await harness.bus()
    async with history(harness, db, queue) as service:
        # Out of order, as facts from different services and queues arrive.
        for msg in [refused, delivered, second, probe, first, shown, decided, saved, voice]:
            await publisher.publish(msg)
        await publisher.publish(asked)
        await publisher.publish(came_in)
        entries = await service.entries(openid, 9)

    assert [(e["kind"], e["id"]) for e in entries] == [
        ("event", came_in.id),
        ("message", asked.id),
        ("decision", decided.id),
        ("typing", shown.id),
        ("reply", first.id),
        ("reply", second.id),
        ("message", voice.id),
        ("media", saved.id),
        ("event", probe.id),
    ]
    by_id = {e["id"]: e for e in entries}
    assert by_id[first.id]["outcome"]["type"] == "outbound.sent"
    assert by_id[second.id]["outcome"]["reason"] == "quota_exhausted"
    assert by_id[shown.id]["outcome"] is None
    assert by_id[asked.id]["who"] == "user"
    assert by_id[decided.id]["message"]["rule"] == "faq"
    assert by_id[second.id]["message"]["content"] == "欢迎光临"
    # In the file: every message once, the two outcomes included.
    stored = ids_of(db, openid)
    assert sorted(stored) == sorted(m.id for m in messages)
    assert unique(stored)


async def test_repeated_and_republished_messages_are_stored_once(
    harness: Harness, queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "history.db"
    openid = new_openid()
    msg = text(openid, at=T0)
    fact = sent(reply(msg, "ok", at=T0 + 1), at=T0 + 2)
    publisher = await harness.bus()
    with capture_logs() as logs:
        async with history(harness, db, queue):
            await publisher.publish(msg)
            # The same bytes again, as any at-least-once producer may send them...
            await harness.publish_raw(EVENTS, msg.routing_key(), encode(msg))
            await harness.publish_raw(EVENTS, msg.routing_key(), encode(msg))
            # ...and a fact published twice, as the sender does when a command comes back.
            await publisher.publish(fact)
            await publisher.publish(fact)
            await eventually(
                lambda: (
                    len(lines(logs, "history.duplicate", event_id=msg.id)),
                    len(lines(logs, "history.duplicate", event_id=fact.id)),
                ),
                lambda counts: counts == (2, 1),
                what="every copy handled",
            )
    assert rows(db, id_=msg.id) == 1
    assert rows(db, id_=fact.id) == 1
    assert len(lines(logs, "history.stored", event_id=msg.id)) == 1


async def test_a_redelivery_after_a_crash_between_write_and_ack_is_stored_once(
    harness: Harness, queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "history.db"
    msg = text(new_openid(), at=T0)
    publisher = await harness.bus()
    with capture_logs() as logs:
        async with contextlib.AsyncExitStack() as first_life:
            # A long busy timeout: the write waits for the lock instead of failing. A short
            # broker timeout: stopping what is left after the crash need not wait for a
            # connection that is gone.
            crashed = await first_life.enter_async_context(
                history(
                    harness,
                    db,
                    queue,
                    history_busy_timeout_s=300.0,
                    bus_options={"connect_timeout_s": 1.0} if harness.kind == "amqp" else {},
                )
            )
            with WriteLock(db) as lock:
                await publisher.publish(msg)
                await eventually(writes_in_flight, lambda n: n >= 1, what="the write in flight")
                # The process loses its broker connection mid-write: the delivery is never
                # acked, so the broker hands it out again...
                await crashed.bus.close()
                lock.release()
                # ...although the write itself went through.
                await eventually(lambda: rows(db, id_=msg.id), lambda n: n == 1, what="written")
        async with history(harness, db, queue):
            await eventually(
                lambda: lines(logs, "history.duplicate", event_id=msg.id, redelivered=True),
                what="the redelivery handled",
            )
    assert rows(db, id_=msg.id) == 1


async def test_a_write_that_fails_is_retried_through_the_bus(
    harness: Harness, queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "history.db"
    msg = text(new_openid(), at=T0)
    publisher = await harness.bus()
    with capture_logs() as logs:
        async with history(harness, db, queue, history_busy_timeout_s=0.05) as service:
            with WriteLock(db):
                await publisher.publish(msg)
                await eventually(
                    lambda: lines(logs, "history.write_failed", event_id=msg.id),
                    what="a failed write",
                )
            await service.entries(msg.openid, 1)
    (stored,) = lines(logs, "history.stored", event_id=msg.id)
    assert stored["attempt"] >= 2
    assert rows(db, id_=msg.id) == 1


async def test_an_unknown_message_type_is_stored_with_its_fields(
    harness: Harness, queue: str, tmp_path: Path
) -> None:
    """What a producer in another language would publish for a MsgType wxkf does not know."""
    db = tmp_path / "history.db"
    openid = new_openid()
    event_id = uuid.uuid4().hex
    fields = {"MediaId": "m-voice-7", "Format": "amr", "Recognition": "明天见"}
    body = {
        "type": "msg.other",
        "v": 1,
        "id": event_id,
        "appid": APPID,
        "openid": openid,
        "time_ms": T0,
        "correlation_id": uuid.uuid4().hex,
        "to_user": GH,
        "create_time": T0 // 1000,
        "msg_id": 6054768590064713728,
        "msg_type": "voice",
        "fields": fields,
    }
    async with history(harness, db, queue) as service:
        await harness.publish_raw(EVENTS, "msg.voice", msgspec.json.encode(body))
        (entry,) = await service.entries(openid, 1)
    assert (entry["id"], entry["kind"], entry["who"]) == (event_id, "message", "user")
    assert (entry["type"], entry["routing_key"]) == ("msg.other", "msg.voice")
    assert entry["message"]["msg_type"] == "voice"
    assert entry["message"]["fields"] == fields
    assert entry["message"]["msg_id"] == 6054768590064713728
    assert rows(db, id_=event_id) == 1


async def test_a_body_that_is_not_a_bus_message_is_dead_lettered_not_lost(
    harness: Harness, queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "history.db"
    bad = [b"not json at all", b'{"type": "msg.text", "content": "no envelope"}']
    async with history(harness, db, queue) as service:
        for body in bad:
            await harness.publish_raw(EVENTS, "msg.text", body)
        letters = await eventually(
            lambda: service.bus.dead_letters(queue),
            lambda found: len(found) == 2,
            what="two dead letters",
        )
    assert sorted(letter.body for letter in letters) == sorted(bad)
    assert all(letter.reason.startswith("undecodable") for letter in letters)
    assert rows(db) == 0


async def test_stopping_waits_for_the_write_in_flight_and_acks_it(
    harness: Harness, queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "history.db"
    msg = text(new_openid(), at=T0)
    publisher = await harness.bus()
    with capture_logs() as logs:
        life = contextlib.AsyncExitStack()
        await life.enter_async_context(history(harness, db, queue, history_busy_timeout_s=300.0))
        with WriteLock(db) as lock:
            await publisher.publish(msg)
            await eventually(writes_in_flight, lambda n: n >= 1, what="the write in flight")
            stopping = asyncio.create_task(life.aclose())  # what SIGTERM does
            await eventually(lambda: lines(logs, "runner.stopping"), what="the stop begun")
            assert not lines(logs, "history.stopped_consuming")  # held by the write
            lock.release()
            await stopping
    # The write finished, then the consumers stopped, then the database closed.
    assert (
        first_index(logs, "history.stored", event_id=msg.id)
        < first_index(logs, "history.stopped_consuming")
        < first_index(logs, "history.db_closed")
    )
    assert rows(db, id_=msg.id) == 1
    # Acked, not handed back: nothing waits in the queue for the next instance.
    await wait_depth(harness, queue, 0)
