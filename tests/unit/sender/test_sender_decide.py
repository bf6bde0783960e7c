"""The sender's pure decisions (services/sender/decide.py): no store, no bus, no WeChat."""

from __future__ import annotations

import msgspec
import pytest

from services.sender import decide, ledger


def entry(state: str, at: float) -> ledger.Entry:
    return ledger.Entry(state=state, at=at)  # type: ignore[arg-type]


def test_a_settled_command_is_republished() -> None:
    assert decide.known(entry("done", 0.0), now=1e9, stale_after_s=30) == decide.Republish()


def test_a_command_in_flight_elsewhere_comes_back_once_its_call_must_be_over() -> None:
    assert decide.known(entry("inflight", 100.0), now=110.0, stale_after_s=30) == decide.ComeBack(
        delay_s=20.0
    )


def test_a_command_in_flight_past_the_deadline_was_abandoned() -> None:
    found = decide.known(entry("inflight", 100.0), now=130.0, stale_after_s=30)
    assert isinstance(found, decide.Abandoned)
    assert found.reason.startswith("abandoned mid-call")


@pytest.mark.parametrize(
    ("errcode", "typing", "expected"),
    [
        (45047, False, decide.CorrectWindow(closed="quota_exhausted", reason="quota_exhausted")),
        (45015, False, decide.CorrectWindow(closed="window_expired", reason="window_expired")),
        (45047, True, decide.CorrectWindow(closed="quota_exhausted", reason="typing_not_allowed")),
    ],
)
def test_a_window_refusal_corrects_our_view(errcode: int, typing: bool, expected: object) -> None:
    assert decide.refused("window", errcode, typing=typing) == expected


def test_typing_refused_by_its_rules_is_rejected_only_for_typing() -> None:
    assert decide.refused("permanent", 45080, typing=True) == decide.RejectTyping()
    assert decide.refused("permanent", 45081, typing=False) == decide.GiveUp()


def test_transient_and_token_errors_are_tried_again_and_too_fast_is_paced() -> None:
    assert decide.refused("transient", -1, typing=False) == decide.TryAgain(paced=False)
    assert decide.refused("token", 40001, typing=False) == decide.TryAgain(paced=False)
    assert decide.refused("transient", 45011, typing=False) == decide.TryAgain(paced=True)


def test_other_errors_give_up() -> None:
    assert decide.refused("permanent", 40003, typing=False) == decide.GiveUp()
    assert decide.refused("media", 40007, typing=False) == decide.GiveUp()


@pytest.mark.parametrize(
    ("age_s", "opens", "final", "expected"),
    [
        (1.0, None, False, "look_again"),
        (1.0, None, True, "reject"),
        (1.0, "message", False, "reject"),
        (10.0, None, False, "reject"),
    ],
)
def test_a_young_command_looks_again_before_the_window_refuses_it(
    age_s: float, opens: str | None, final: bool, expected: str
) -> None:
    found = decide.window_racing(age_s=age_s, opens=opens, grace_s=5.0, final=final)
    assert found == expected


def test_decisions_are_plain_values() -> None:
    # Tagged Structs: a decision can be logged or compared as data.
    assert msgspec.json.encode(decide.TryAgain(paced=True)) == b'{"type":"TryAgain","paced":true}'
