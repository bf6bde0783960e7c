"""The sender's decisions, pure: from what a delivery learned (its predecessor's state, the
claim's answer, the ledger's entry of its command, how the call ended), what to do next. No
I/O: the handlers (``handlers.py``) read the state, ask here, and carry the decision out.

Each decision is a tagged, frozen Struct that carries what its carrying-out needs (a retry's
reason, errmsg, errcode and delay; a failure's errmsg), so the handlers pass one value
instead of their arguments.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from libs.common.media_client import MediaServiceError
from libs.common.schemas import RejectReason
from libs.common.store import Claim, StoreError, forgotten
from libs.common.wechat.apierrors import (
    ErrorKind,
    TokenUnavailable,
    WeChatApiError,
    WeChatBadRequest,
    WeChatUnavailable,
)
from services.sender import ledger
from services.sender.errors import NotSendable
from services.sender.window_rules import CloseReason, WindowTake

# -- the ends of a delivery that sends nothing now ------------------------------------------------


class Later(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Hand the command back to the bus (on its last attempt: report it failed and dead-letter
    it). ``why`` labels the retry; ``delay_s`` overrides the queue's backoff; ``nothing_done``:
    WeChat took nothing of this delivery's."""

    why: str
    errmsg: str
    errcode: int | None = None
    delay_s: float | None = None
    nothing_done: bool = True


class Fail(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Report the command failed. ``release``: give back the window slot the claim took first
    (WeChat said no, so the slot was not spent)."""

    errmsg: str
    errcode: int | None = None
    release: bool = False


def media_failed(exc: MediaServiceError) -> Later | Fail:
    """The media service could not give the command's media: try again if it may later."""
    if exc.retryable:
        return Later(why="media_service", errmsg=str(exc))
    return Fail(errmsg=str(exc), errcode=exc.errcode)


# -- a command waits for its predecessor ----------------------------------------------------------


class Wait(msgspec.Struct, frozen=True, tag=True):
    """Come back after ``delay_s``: the backoff of any retry (a waiting command spends
    attempts too, so its wait spans its predecessor's retries), and never before the
    predecessor's next try (``after_s`` past it)."""

    delay_s: float


class GoAhead(msgspec.Struct, frozen=True, tag=True):
    """Its predecessor never settled (lost, or still failing): better late than never."""


def predecessor_pending(
    *, final: bool, now: float, backoff_s: float, retry_at: float | None, after_s: float
) -> Wait | GoAhead:
    """A command whose predecessor has not settled (``retry_at``: when the predecessor is
    tried next, if it said)."""
    if final:
        return GoAhead()
    delay = backoff_s if retry_at is None else max(backoff_s, retry_at - now + after_s)
    return Wait(delay)


# -- the claim's answer ---------------------------------------------------------------------------


class Go(msgspec.Struct, frozen=True, tag=True):
    """Everything the call needs was taken: call WeChat."""


class Forgotten(msgspec.Struct, frozen=True, tag=True):
    """Taken, but the store's memory began after the command was made and this copy may
    repeat one sent before: the ledger cannot tell, so it is an ambiguous failure."""


class TakeOver(msgspec.Struct, frozen=True, tag=True):
    """The mark found is the one this delivery's previous attempt left without calling
    WeChat (its note says so): delete it (while it is still ``mark``) and claim again."""

    mark: bytes


class AlreadyKnown(msgspec.Struct, frozen=True, tag=True):
    """The ledger knows the command: :func:`known` says what then."""

    entry: ledger.Entry


class OpenWindow(msgspec.Struct, frozen=True, tag=True):
    """No window, but the event this command answers opens one whose copy on the windows queue
    may not have arrived yet: open it (a grant only ever extends), then claim again, once."""


class WindowShut(msgspec.Struct, frozen=True, tag=True):
    """The reply window has no slot for it (``reason``: why)."""

    reason: RejectReason


class Pace(msgspec.Struct, frozen=True, tag=True):
    """The rate limit has a token in ``wait_s``: wait for it here and keep the call's place."""

    wait_s: float


Claimed = Go | Forgotten | TakeOver | AlreadyKnown | OpenWindow | WindowShut | Pace | Later

_GO = Go()
"""The common answer, made once."""


def claimed(
    claim: Claim[WindowTake] | Claim[None],
    *,
    entry: ledger.Entry | None,
    note: str | None,
    born: float | None,
    may_open: bool,
    waited_s: float,
    max_pace_wait_s: float,
) -> Claimed:
    """What to do with the claim's answer. ``entry``: the ledger's, parsed from
    ``claim.known``; ``note``: what the previous attempt left (read when ``known``);
    ``born``: when the command was made, for a copy that may repeat one handled before and
    whose type must not be sent twice (None otherwise); ``may_open``: the command names a
    window its event opens and it was not opened here yet; ``waited_s``: paced so far."""
    if claim.ok:
        return Forgotten() if born is not None and forgotten(claim, born) else _GO
    if claim.known is not None and entry is not None:
        if entry.state == "inflight" and entry.owner and entry.owner == note:
            return TakeOver(claim.known)
        return AlreadyKnown(entry)
    if claim.step is not None:
        return OpenWindow() if may_open else WindowShut(claim.step.reason or "no_window")
    if waited_s + claim.wait_s > max_pace_wait_s:
        return Later(why="rate_limit", errmsg="rate limit", delay_s=claim.wait_s)
    return Pace(claim.wait_s)


# -- a command the ledger already knows ----------------------------------------------------------


class Republish(msgspec.Struct, frozen=True, tag=True):
    """Settled before (the ack or a publish was lost): say its outcome again, send nothing."""


class ComeBack(msgspec.Struct, frozen=True, tag=True):
    """Another delivery is calling WeChat with it: try again once its call must be over."""

    delay_s: float


class Abandoned(msgspec.Struct, frozen=True, tag=True):
    """Marked in flight long past any call's deadline: a replica died mid-call, and whether
    WeChat delivered it is unknown (an ambiguous failure)."""

    reason: str = "abandoned mid-call by an earlier delivery"


Known = Republish | ComeBack | Abandoned


def known(entry: ledger.Entry, *, now: float, stale_after_s: float) -> Known:
    """What a delivery does with a command the ledger holds (``now``: wall clock)."""
    if entry.state == "done":
        return Republish()
    age = now - entry.at
    if age < stale_after_s:
        return ComeBack(delay_s=stale_after_s - age)
    return Abandoned()


# -- WeChat refused the call ----------------------------------------------------------------------


class CorrectWindow(msgspec.Struct, frozen=True, tag=True):
    """WeChat's view of the window wins (45015/45047): close ours, report the rejection."""

    closed: CloseReason
    reason: RejectReason


class RejectTyping(msgspec.Struct, frozen=True, tag=True):
    """WeChat refused a typing indicator by its rules (45080/45081)."""


class TryAgain(msgspec.Struct, frozen=True, tag=True):
    """Nothing was delivered and a later try may succeed; ``paced``: WeChat said too fast
    (45011), so the retry waits the rate-limit pause."""

    paced: bool = False


class GiveUp(msgspec.Struct, frozen=True, tag=True):
    """Nothing was delivered and trying again would not change that: report it failed."""


Refusal = CorrectWindow | RejectTyping | TryAgain | GiveUp

_QUOTA_ERRCODE = 45047
_TYPING_ERRCODES = (45080, 45081)
_RATE_ERRCODE = 45011


def refused(kind: ErrorKind, errcode: int, *, typing: bool) -> Refusal:
    """What an errcode from WeChat means for this command (``typing``: a typing command)."""
    if kind == "window":
        closed: CloseReason = "quota_exhausted" if errcode == _QUOTA_ERRCODE else "window_expired"
        return CorrectWindow(closed=closed, reason="typing_not_allowed" if typing else closed)
    if typing and errcode in _TYPING_ERRCODES:
        return RejectTyping()
    if kind in ("transient", "token"):
        return TryAgain(paced=errcode == _RATE_ERRCODE)
    return GiveUp()


# -- the window had no slot -----------------------------------------------------------------------


def window_racing(
    *, age_s: float, opens: str | None, grace_s: float, final: bool
) -> Literal["look_again", "reject"]:
    """A command the window refused: the user message that opens the window travels on
    another queue and may not have reached the sender yet, so a young command looks again
    shortly before it is refused — unless it named the window its event opens (then open
    already) or this is its last attempt."""
    if opens is None and age_s < grace_s and not final:
        return "look_again"
    return "reject"


# -- how the call ended ---------------------------------------------------------------------------


class Refuse(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """WeChat refused by its window or typing rules: report the rejection, after closing our
    window when ``close`` says WeChat's view of it differs (the next is refused without a
    call)."""

    reason: RejectReason
    errcode: int
    close: CloseReason | None = None


class Undelivered(msgspec.Struct, frozen=True, tag=True):
    """WeChat definitely did not deliver: give the slot back and drop this delivery's mark
    (best effort), so the next try sends; then ``then``."""

    then: Later | Fail


class Ambiguous(msgspec.Struct, frozen=True, tag=True):
    """WeChat may have delivered: the slot stays spent; :func:`ambiguous` decides the rest."""

    reason: str


Ended = Refuse | Fail | Undelivered | Ambiguous

CallError = (
    WeChatApiError
    | WeChatUnavailable
    | WeChatBadRequest
    | NotSendable
    | MediaServiceError
    | TokenUnavailable
    | StoreError
)
CALL_ERRORS = (
    WeChatApiError,
    WeChatUnavailable,
    WeChatBadRequest,
    NotSendable,
    MediaServiceError,
    TokenUnavailable,
    StoreError,
)
"""What a call may raise, every one decided by :func:`call_failed`."""


def call_failed(exc: CallError, *, typing: bool, rate_pause_s: float) -> Ended:
    """What a call that raised ``exc`` means (``typing``: a typing command;
    ``rate_pause_s``: the wait after WeChat said too fast)."""
    if isinstance(exc, WeChatApiError):
        refusal = refused(exc.kind, exc.errcode, typing=typing)
        if isinstance(refusal, CorrectWindow):
            return Refuse(reason=refusal.reason, errcode=exc.errcode, close=refusal.closed)
        if isinstance(refusal, RejectTyping):
            return Refuse(reason="typing_not_allowed", errcode=exc.errcode)
        if isinstance(refusal, TryAgain):
            delay = rate_pause_s if refusal.paced else None
            return Undelivered(
                Later(why=exc.name, errmsg=exc.errmsg, errcode=exc.errcode, delay_s=delay)
            )
        return Fail(errmsg=exc.errmsg, errcode=exc.errcode, release=True)
    if isinstance(exc, WeChatUnavailable):
        if exc.ambiguous:
            return Ambiguous(exc.reason)
        return Undelivered(Later(why="unavailable", errmsg=exc.reason))
    if isinstance(exc, (WeChatBadRequest, NotSendable)):
        return Fail(errmsg=exc.reason, release=True)
    if isinstance(exc, MediaServiceError):
        return Undelivered(media_failed(exc))
    # A refused token and a failed store both come before any call WeChat accepted.
    if isinstance(exc, TokenUnavailable):
        return Undelivered(Later(why="token", errmsg=str(exc), errcode=exc.errcode))
    return Undelivered(Later(why="store", errmsg=str(exc)))


class Forget(msgspec.Struct, frozen=True, tag=True):
    """Drop the ledger mark and send it again (its type may arrive twice): ``then``."""

    then: Later


def ambiguous(reason: str, *, retried: bool) -> Forget | Fail:
    """WeChat may have delivered it: ``retried`` (its type is listed in ``ambiguous_retry``)
    sends it again, maybe twice; otherwise it is reported failed, maybe lost, never twice."""
    if retried:
        return Forget(Later(why="ambiguous", errmsg=f"ambiguous: {reason}", nothing_done=False))
    errmsg = f"ambiguous: {reason}; WeChat may have delivered it, so it is not sent again"
    return Fail(errmsg=errmsg)
