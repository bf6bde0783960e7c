"""The bus handler: stored, duplicate, or handed back to the bus when the database fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from history_helpers import new_openid, text
from prometheus_client import REGISTRY

from examples.extension.consumer import keep
from examples.extension.db import HistoryDb
from libs.common.bus import Retry


def records(outcome: str) -> float:
    labels = {"kind": "message", "outcome": outcome}
    return REGISTRY.get_sample_value("wxkf_history_records_total", labels) or 0.0


async def test_stored_then_duplicate(tmp_path: Path) -> None:
    db = await HistoryDb.open(str(tmp_path / "h.db"))
    try:
        msg = text(new_openid())
        stored, duplicate = records("stored"), records("duplicate")
        assert await keep(db, msg) is True
        assert await keep(db, msg, attempt=2, redelivered=True) is False
        assert records("stored") == stored + 1
        assert records("duplicate") == duplicate + 1
    finally:
        await db.close()


async def test_a_database_failure_is_a_retry_and_is_counted(tmp_path: Path) -> None:
    db = await HistoryDb.open(str(tmp_path / "h.db"))
    await db.close()
    failed = records("failed")
    with pytest.raises(Retry, match="history database: the history database is closed"):
        await keep(db, text(new_openid()))
    assert records("failed") == failed + 1
