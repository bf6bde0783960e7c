"""Sessions: what a decision changes, and how the stored form reads back."""

from __future__ import annotations

from services.router import sessions
from services.router.sessions import EMPTY, Session, SessionChange


def test_change_applies_transfer_day_and_tags() -> None:
    s = SessionChange(transferred_at=100.0, day="2026-11-25", add_tags=("vip",)).apply(EMPTY)
    assert s == Session(transferred_at=100.0, last_day="2026-11-25", tags=("vip",))
    s = SessionChange(day="2026-11-26", add_tags=("a", "vip")).apply(s)
    assert s == Session(transferred_at=100.0, last_day="2026-11-26", tags=("a", "vip"))


def test_an_old_redelivered_event_moves_nothing_backwards() -> None:
    s = Session(transferred_at=500.0, last_day="2026-11-25")
    s2 = SessionChange(transferred_at=100.0, day="2026-11-20").apply(s)
    assert s2 == s


def test_stored_form_round_trips_and_garbage_reads_as_empty() -> None:
    s = Session(transferred_at=1.5, last_day="2026-11-25", tags=("x",))
    assert sessions.decode(sessions._encoder.encode(s)) == s
    assert sessions.decode(None) == EMPTY
    assert sessions.decode(b"not json") == EMPTY
    assert sessions.decode(b'{"tags": 3}') == EMPTY
    assert sessions._encoder.encode(EMPTY) == b"{}"
