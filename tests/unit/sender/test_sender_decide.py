"""The sender's pure decisions (services/sender/decide.py): no store, no bus, no WeChat."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import pytest

from libs.common.media_client import MediaServiceError
from libs.common.store import Claim, StoreError
from libs.common.wechat.apierrors import (
    TokenUnavailable,
    WeChatApiError,
    WeChatBadRequest,
    WeChatUnavailable,
)
from services.sender import decide, ledger
from services.sender.errors import NotSendable
from services.sender.window_rules import WindowTake


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


# -- a command waits for its predecessor ----------------------------------------------------------


def test_a_waiting_command_backs_off_like_any_retry() -> None:
    found = decide.predecessor_pending(
        final=False, now=100.0, backoff_s=2.0, retry_at=None, after_s=0.01
    )
    assert found == decide.Wait(2.0)


def test_a_waiting_command_never_comes_back_before_its_predecessor() -> None:
    found = decide.predecessor_pending(
        final=False, now=100.0, backoff_s=2.0, retry_at=110.0, after_s=0.01
    )
    assert found == decide.Wait(pytest.approx(10.01))
    soon = decide.predecessor_pending(
        final=False, now=100.0, backoff_s=2.0, retry_at=100.5, after_s=0.01
    )
    assert soon == decide.Wait(2.0)


def test_on_its_last_attempt_a_waiting_command_goes_ahead() -> None:
    found = decide.predecessor_pending(
        final=True, now=100.0, backoff_s=2.0, retry_at=110.0, after_s=0.01
    )
    assert found == decide.GoAhead()


# -- the claim's answer ---------------------------------------------------------------------------

Answer = Claim[WindowTake]


def claimed(claim: Answer, **overrides: Any) -> decide.Claimed:
    given: dict[str, Any] = {
        "entry": None,
        "note": None,
        "born": None,
        "may_open": False,
        "waited_s": 0.0,
        "max_pace_wait_s": 1.0,
    }
    return decide.claimed(claim, **{**given, **overrides})


def test_a_claim_that_took_everything_goes() -> None:
    assert claimed(Answer(ok=True)) == decide.Go()


def test_a_doubtful_copy_made_before_the_store_forgot_is_forgotten() -> None:
    forgetful = Answer(ok=True, since=1000.0)
    assert claimed(forgetful, born=900.0) == decide.Forgotten()
    assert claimed(forgetful, born=1100.0) == decide.Go()  # made since: the ledger knows
    assert claimed(forgetful, born=None) == decide.Go()  # fresh, or may be sent twice


def test_the_previous_attempts_own_mark_is_taken_over() -> None:
    mark = b'{"state":"inflight","at":1.0,"owner":"me"}'
    ours = ledger.Entry(state="inflight", at=1.0, owner="me")
    found = claimed(Answer(ok=False, known=mark), entry=ours, note="me")
    assert found == decide.TakeOver(mark)


@pytest.mark.parametrize(
    ("entry", "note"),
    [
        (ledger.Entry(state="inflight", at=1.0, owner="other"), "me"),
        (ledger.Entry(state="inflight", at=1.0, owner="me"), None),
        (ledger.Entry(state="inflight", at=1.0, owner=""), ""),
        (ledger.Entry(state="done", at=1.0, owner="me"), "me"),
    ],
)
def test_any_other_mark_is_known(entry: ledger.Entry, note: str | None) -> None:
    found = claimed(Answer(ok=False, known=b"{}"), entry=entry, note=note)
    assert found == decide.AlreadyKnown(entry)


def test_no_window_opens_the_commands_own_once_else_the_window_refuses() -> None:
    shut = Answer(ok=False, step=WindowTake(ok=False, reason="window_expired"))
    assert claimed(shut, may_open=True) == decide.OpenWindow()
    assert claimed(shut, may_open=False) == decide.WindowShut("window_expired")
    unknown = Answer(ok=False, step=WindowTake(ok=False))
    assert claimed(unknown) == decide.WindowShut("no_window")


def test_a_short_wait_for_the_rate_limit_is_paced_a_long_one_goes_back() -> None:
    limited = Answer(ok=False, wait_s=0.4)
    assert claimed(limited, waited_s=0.5) == decide.Pace(0.4)
    assert claimed(limited, waited_s=0.7) == decide.Later(
        why="rate_limit", errmsg="rate limit", delay_s=0.4
    )


# -- how the call ended ---------------------------------------------------------------------------


def ended(exc: decide.CallError, typing: bool = False) -> decide.Ended:
    return decide.call_failed(exc, typing=typing, rate_pause_s=7.0)


def test_a_window_errcode_closes_our_window_and_rejects() -> None:
    found = ended(WeChatApiError(45047, "quota", "/send"))
    assert found == decide.Refuse(reason="quota_exhausted", errcode=45047, close="quota_exhausted")
    typing = ended(WeChatApiError(45015, "expired", "/typing"), typing=True)
    assert typing == decide.Refuse(
        reason="typing_not_allowed", errcode=45015, close="window_expired"
    )


def test_typing_refused_by_its_rules_is_rejected_without_touching_the_window() -> None:
    found = ended(WeChatApiError(45080, "no", "/typing"), typing=True)
    assert found == decide.Refuse(reason="typing_not_allowed", errcode=45080, close=None)


def test_a_transient_errcode_was_not_delivered_and_is_tried_again() -> None:
    exc = WeChatApiError(-1, "busy", "/send")
    assert ended(exc) == decide.Undelivered(
        decide.Later(why=exc.name, errmsg=exc.errmsg, errcode=-1)
    )


def test_too_fast_waits_the_rate_limit_pause() -> None:
    found = ended(WeChatApiError(45011, "too fast", "/send"))
    assert isinstance(found, decide.Undelivered)
    assert isinstance(found.then, decide.Later)
    assert (found.then.errcode, found.then.delay_s) == (45011, 7.0)


def test_a_permanent_errcode_gives_the_slot_back_and_fails() -> None:
    found = ended(WeChatApiError(40003, "bad openid", "/send"))
    assert found == decide.Fail(errmsg="bad openid", errcode=40003, release=True)


def test_an_unanswered_call_is_ambiguous_or_not_delivered() -> None:
    lost = WeChatUnavailable("/send", "read timeout", ambiguous=True)
    assert ended(lost) == decide.Ambiguous("read timeout")
    refused = WeChatUnavailable("/send", "connection refused", ambiguous=False)
    assert ended(refused) == decide.Undelivered(
        decide.Later(why="unavailable", errmsg="connection refused")
    )


def test_a_bad_request_or_an_unsendable_command_fails_and_gives_the_slot_back() -> None:
    assert ended(WeChatBadRequest("/send", "too long")) == decide.Fail(
        errmsg="too long", release=True
    )
    assert ended(NotSendable("no media")) == decide.Fail(errmsg="no media", release=True)


def test_the_media_service_is_tried_again_only_when_it_may_answer_later() -> None:
    down = MediaServiceError("down", code="unavailable", status=503, retryable=True, errcode=None)
    assert ended(down) == decide.Undelivered(decide.Later(why="media_service", errmsg="down"))
    gone = MediaServiceError("gone", code="not_found", status=404, retryable=False, errcode=40007)
    assert ended(gone) == decide.Undelivered(decide.Fail(errmsg="gone", errcode=40007))
    assert decide.media_failed(gone) == decide.Fail(errmsg="gone", errcode=40007)


def test_a_refused_token_or_a_failed_store_came_before_any_call() -> None:
    token = TokenUnavailable("no token", kind="token", errcode=40013)
    assert ended(token) == decide.Undelivered(
        decide.Later(why="token", errmsg="no token", errcode=40013)
    )
    store = StoreError("redis down")
    assert ended(store) == decide.Undelivered(decide.Later(why="store", errmsg="redis down"))


def test_every_call_error_is_decided() -> None:
    assert set(decide.CALL_ERRORS) == set(get_args(decide.CallError))


# -- WeChat may have delivered ---------------------------------------------------------------------


def test_an_ambiguous_call_is_sent_again_only_when_its_type_may_arrive_twice() -> None:
    assert decide.ambiguous("read timeout", retried=True) == decide.Forget(
        decide.Later(why="ambiguous", errmsg="ambiguous: read timeout", nothing_done=False)
    )
    given_up = decide.ambiguous("read timeout", retried=False)
    assert isinstance(given_up, decide.Fail)
    assert given_up.errmsg.startswith("ambiguous: read timeout; WeChat may have delivered it")
    assert not given_up.release  # the slot stays spent
