"""The sender's decisions, pure: from what a delivery learned (the ledger's entry of its
command, WeChat's refusal, the window's answer), what to do next. No I/O: the handlers
(``handlers.py``) read the state, ask here, and carry the decision out.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from libs.common.schemas import RejectReason
from libs.common.wechat.apierrors import ErrorKind
from services.sender import ledger
from services.sender.window_rules import CloseReason

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
