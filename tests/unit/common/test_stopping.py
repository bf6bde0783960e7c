"""What each stop signal means (the pure decision); the processes that act on it are tested
with the runner (tests/unit/common/test_runner.py)."""

from __future__ import annotations

import signal

import pytest

from libs.common.stopping import StopSignals

INT, TERM = signal.SIGINT, signal.SIGTERM


@pytest.mark.parametrize(
    ("signals", "decisions"),
    [
        ([TERM], ["stop"]),
        ([INT], ["stop"]),
        # One Ctrl-C under `wxkf up`: the terminal's SIGINT and up's SIGTERM, either order.
        ([INT, TERM], ["stop", "same_stop"]),
        ([TERM, INT], ["stop", "same_stop"]),
        # Ctrl-C pressed twice, kill run twice.
        ([INT, INT], ["stop", "stop_now"]),
        ([TERM, TERM], ["stop", "stop_now"]),
        # The second Ctrl-C under `wxkf up`.
        ([INT, TERM, INT], ["stop", "same_stop", "stop_now"]),
        ([TERM, INT, TERM], ["stop", "same_stop", "stop_now"]),
    ],
)
def test_the_other_signal_once_is_the_same_stop_anything_more_stops_at_once(
    signals: list[signal.Signals], decisions: list[str]
) -> None:
    policy = StopSignals()
    assert [policy.decide(s) for s in signals] == decisions
