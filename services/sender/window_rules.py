"""The reply-window rules, in the two forms the store runs: ``window.lua`` beside this file
for Redis, and the Python below for ``memory://`` (one contract test, on both backends, holds
them to the same answers: ``tests/integration/sender/test_window_rules.py``).

A user's window holds one grant per kind. A grant permits ``count`` sends until ``until``; a
send takes a slot from the valid grant (``until > now``, count above 0) that expires first,
and gives it back when WeChat definitely did not deliver. A grant is replaced only by one that
ends strictly later than the one issued before, so a redelivered event never resets a count
already used nor reopens a window WeChat closed. The key lives until :data:`LINGER_S` after
its latest ``until``: within it a take says ``window_expired``, after it ``no_window``.

Every operation is one atomic step of the store (:class:`~libs.common.store.Script`), and the
take of a send is a step of its claim (:class:`~libs.common.store.Step`): the ledger mark,
the slot and the rate token in one atomic call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import msgspec

from libs.common.store import Args, Cell, Script, Step

GrantKind = Literal["message", "enter"]
GRANT_KINDS: tuple[GrantKind, ...] = ("message", "enter")
Refusal = Literal["no_window", "window_expired", "quota_exhausted"]
CloseReason = Literal["window_expired", "quota_exhausted"]

LINGER_S = 24 * 3600.0
"""How long a window key outlives its latest grant's ``until``."""


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """A permission to send ``count`` messages until ``until`` (one per kind per user)."""

    kind: GrantKind
    count: int
    until: float


class WindowTake(msgspec.Struct, frozen=True, kw_only=True):
    """The result of reserving one send slot."""

    ok: bool
    kind: GrantKind | None = None
    """Which grant the slot came from (to release it later)."""
    reason: Refusal | None = None
    remaining: int = 0


def kind(name: str) -> GrantKind:
    for known in GRANT_KINDS:
        if name == known:
            return known
    raise ValueError(f"grant kind must be one of {', '.join(GRANT_KINDS)}, got {name!r}")


def refusal(reason: str) -> WindowTake:
    if reason == "no_window":
        return WindowTake(ok=False, reason="no_window")
    if reason == "quota_exhausted":
        return WindowTake(ok=False, reason="quota_exhausted")
    return WindowTake(ok=False, reason="window_expired")


# -- the memory:// form ------------------------------------------------------------------------


@dataclass(slots=True)
class _GrantState:
    count: int
    granted: int
    until: float
    issued: float
    """The until as granted; ``until`` moves to "now" when WeChat says the window closed."""


@dataclass(slots=True)
class Window:
    """A user's window in ``memory://``: the grant of each kind."""

    grants: dict[GrantKind, _GrantState] = field(default_factory=dict)


def _slot(window: Window | None, now: float) -> tuple[GrantKind, _GrantState] | WindowTake:
    """The valid grant that expires first, or the refusal (``slot`` in window.lua)."""
    if window is None or not window.grants:
        return WindowTake(ok=False, reason="no_window")
    best: tuple[GrantKind, _GrantState] | None = None
    in_time = False
    for k in GRANT_KINDS:
        state = window.grants.get(k)
        if state is None or state.until <= now:
            continue
        in_time = True
        if state.count > 0 and (best is None or state.until < best[1].until):
            best = (k, state)
    if best is not None:
        return best
    return WindowTake(ok=False, reason="quota_exhausted" if in_time else "window_expired")


def _grant(cell: Cell[Window], args: Args) -> None:
    which, count, until, now, linger = args
    window = cell.get() or Window()
    old = window.grants.get(kind(str(which)))
    if old is not None and old.issued >= float(until):
        return
    n = int(count)
    window.grants[kind(str(which))] = _GrantState(
        count=n, granted=n, until=float(until), issued=float(until)
    )
    latest = max(s.until for s in window.grants.values())
    cell.put(window, ttl_s=max(latest - float(now), 0.0) + float(linger))


def _take(cell: Cell[Window], args: Args) -> WindowTake:
    now, spend = args
    found = _slot(cell.get(), float(now))
    if isinstance(found, WindowTake):
        return found
    k, state = found
    if spend != "0":
        state.count -= 1
    return WindowTake(ok=True, kind=k, remaining=state.count)


def _release(cell: Cell[Window], args: Args) -> None:
    which, now = args
    window = cell.get()
    state = None if window is None else window.grants.get(kind(str(which)))
    if state is not None and state.until > float(now) and state.count < state.granted:
        state.count += 1


def _close(cell: Cell[Window], args: Args) -> None:
    reason, now = args
    window = cell.get()
    if window is None:
        return
    for state in window.grants.values():
        if reason == "quota_exhausted":
            state.count = 0
        elif state.until > float(now):
            state.until = float(now)


def _check(cell: Cell[Window], args: Args) -> tuple[bool, Any]:
    found = _slot(cell.get(), float(args[0]))
    if isinstance(found, WindowTake):
        return False, found
    return True, found


def _commit(cell: Cell[Window], hold: tuple[GrantKind, _GrantState]) -> WindowTake:
    k, state = hold
    state.count -= 1
    return WindowTake(ok=True, kind=k, remaining=state.count)


# -- the Redis form's answers ------------------------------------------------------------------


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _read_take(reply: Any) -> WindowTake:
    ok, word, remaining = reply
    if ok:
        return WindowTake(ok=True, kind=kind(_text(word)), remaining=int(remaining))
    return refusal(_text(word))


def _read_step(answer: Any) -> WindowTake:
    """A step's answer: ``[kind, remaining]`` taken, a reason refused, or the memory form's
    own answer (which is a WindowTake already)."""
    if isinstance(answer, WindowTake):
        return answer
    if isinstance(answer, list | tuple):
        return WindowTake(ok=True, kind=kind(_text(answer[0])), remaining=int(answer[1]))
    return refusal(_text(answer))


def _nothing(reply: Any) -> None:
    return None


_LUA = resources.files(__package__).joinpath("window.lua").read_text("utf-8")


def _script(name: str) -> str:
    return f"local W = (function()\n{_LUA}\nend)()\nreturn W.{name}(KEYS[1], ARGV)\n"


GRANT: Script[Window, None] = Script(
    name="window_grant", lua=_script("grant"), read=_nothing, state=Window, memory=_grant
)
TAKE: Script[Window, WindowTake] = Script(
    name="window_take", lua=_script("take"), read=_read_take, state=Window, memory=_take
)
RELEASE: Script[Window, None] = Script(
    name="window_release", lua=_script("release"), read=_nothing, state=Window, memory=_release
)
CLOSE: Script[Window, None] = Script(
    name="window_close", lua=_script("close"), read=_nothing, state=Window, memory=_close
)
CLAIM: Step[Window, WindowTake] = Step(
    name="window", lua=_LUA, read=_read_step, state=Window, check=_check, commit=_commit
)
"""A slot, taken by a claim (as :data:`TAKE` takes it) with its mark and rate token."""
