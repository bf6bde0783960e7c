"""The bus handler: every message from the history's queues, stored once.

The bus acks only after the handler returned, and the handler returns only after the record
is committed, so an ack never runs ahead of the work. A database that cannot be written now
(locked past its busy timeout, disk full) is a transient failure: ``Retry`` hands the message
back to the bus's delay queues instead of waiting here.
"""

from __future__ import annotations

import structlog

from examples.extension import metrics
from examples.extension.db import HistoryDb
from examples.extension.errors import DatabaseError
from examples.extension.records import record_of
from libs.common.bus import Delivery, Handler, Retry
from libs.common.observability.logging import hash_openid
from libs.common.observability.metrics import Timer
from libs.common.schemas import AnyMessage

log = structlog.get_logger(__name__)


def handler(db: HistoryDb) -> Handler:
    async def handle(msg: AnyMessage, delivery: Delivery) -> None:
        await keep(db, msg, attempt=delivery.attempt, redelivered=delivery.redelivered)

    return handle


async def keep(
    db: HistoryDb, msg: AnyMessage, *, attempt: int = 1, redelivered: bool = False
) -> bool:
    """Store ``msg``; False when it was stored before (a redelivery, a repeated fact).

    ``attempt`` and ``redelivered`` (the broker's flag) only go to the log line.
    """
    record = record_of(msg)
    try:
        with metrics.WRITES_IN_FLIGHT.track_inprogress(), Timer(metrics.WRITE_SECONDS.observe):
            stored = await db.add(record)
    except DatabaseError as exc:
        metrics.RECORDS.labels(record.kind, "failed").inc()
        log.warning("history.write_failed", event_id=record.id, kind=record.kind, error=exc.message)
        raise Retry(f"history database: {exc.message}") from None
    metrics.RECORDS.labels(record.kind, "stored" if stored else "duplicate").inc()
    log.debug(
        "history.stored" if stored else "history.duplicate",
        event_id=record.id,
        kind=record.kind,
        type=record.type,
        openid=hash_openid(record.openid),
        attempt=attempt,
        redelivered=redelivered,
    )
    return stored
