"""The reply window of each user, as the sender sees it (WECHAT.md §7.1).

A user message opens or renews a grant of ``window_message_count`` messages until its
CreateTime plus ``window_message_s``; entering the chat grants ``window_enter_count`` until its
CreateTime plus ``window_enter_s``. The counts live in the store, shared by every replica and
updated atomically there by the sender's own rules (``window_rules.py``, ``window.lua``).

The operations check their arguments before the store is called: a bad one raises
``ValueError`` and changes nothing.
"""

from __future__ import annotations

import math

from libs.common.schemas import AnyMessage, SendCommand, SessionEntered, UserMessage
from libs.common.store import StepCall, Store
from services.sender import window_rules
from services.sender.settings import SenderSettings
from services.sender.window_rules import CloseReason, Grant, GrantKind, WindowTake


def window_key(appid: str, openid: str) -> str:
    return f"sender:window:{appid}:{openid}"


def grant_opened_by(cmd: SendCommand, settings: SenderSettings) -> Grant | None:
    """The grant of the event a command answers (as :func:`grant_for` gives it), if it says."""
    if cmd.opens == "message":
        count, span = settings.window_message_count, settings.window_message_s
    elif cmd.opens == "enter":
        count, span = settings.window_enter_count, settings.window_enter_s
    else:
        return None
    return Grant(kind=cmd.opens, count=count, until=cmd.opened_at + span)


def grant_for(event: AnyMessage, settings: SenderSettings) -> Grant | None:
    """The grant an inbound event opens, or None for events that open nothing."""
    if isinstance(event, UserMessage):
        return message_grant(event, settings)
    if isinstance(event, SessionEntered):
        return enter_grant(event, settings)
    return None


def message_grant(event: UserMessage, settings: SenderSettings) -> Grant:
    """What a user message opens."""
    return Grant(
        kind="message",
        count=settings.window_message_count,
        until=event.create_time + settings.window_message_s,
    )


def enter_grant(event: SessionEntered, settings: SenderSettings) -> Grant:
    """What entering the chat opens."""
    return Grant(
        kind="enter",
        count=settings.window_enter_count,
        until=event.create_time + settings.window_enter_s,
    )


# -- the operations ----------------------------------------------------------------------------


async def grant(store: Store, key: str, g: Grant, *, now: float) -> None:
    """Open or renew the grant of this kind (see ``window_rules.py`` for when it replaces)."""
    _check_grant(g)
    await store.run(
        window_rules.GRANT, key, g.kind, g.count, float(g.until), _now(now), window_rules.LINGER_S
    )


async def take(store: Store, key: str, *, now: float) -> WindowTake:
    """Reserve one slot from the valid grant that expires first."""
    return await store.run(window_rules.TAKE, key, _now(now), "1")


async def room(store: Store, key: str, *, now: float) -> WindowTake:
    """What :func:`take` would answer now, taking nothing: a check that must not hold a slot a
    concurrent send may need (``remaining``: the slots left before a take)."""
    return await store.run(window_rules.TAKE, key, _now(now), "0")


async def release(store: Store, key: str, kind: GrantKind, *, now: float) -> None:
    """Give back a slot taken from ``kind`` (WeChat definitely did not deliver): only while
    that grant is still valid, and never above the count it was granted."""
    await store.run(window_rules.RELEASE, key, window_rules.kind(kind), _now(now))


async def close(store: Store, key: str, *, now: float, reason: CloseReason) -> None:
    """WeChat refused (45015/45047) although our view allowed: correct our view.

    ``quota_exhausted`` sets every grant's count to 0; ``window_expired`` ends every grant
    still open at ``now``. Either way a later grant (a new user message) renews."""
    if reason not in ("window_expired", "quota_exhausted"):
        raise ValueError(f"close reason must be window_expired or quota_exhausted, got {reason!r}")
    await store.run(window_rules.CLOSE, key, reason, _now(now))


def taking(key: str, *, now: float) -> StepCall[WindowTake]:
    """A slot as :func:`take` would reserve it, taken by a claim with its other steps."""
    return window_rules.CLAIM.on(key, _now(now))


def _now(when: float) -> float:
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise ValueError(f"now must be a finite unix time in seconds, got {when!r}")
    return float(when)


def _check_grant(g: Grant) -> None:
    window_rules.kind(g.kind)
    if isinstance(g.count, bool) or not isinstance(g.count, int) or g.count < 0:
        raise ValueError(f"grant count must be an integer >= 0, got {g.count!r}")
    if isinstance(g.until, bool) or not isinstance(g.until, int | float):
        raise ValueError(f"grant until must be a finite unix time in seconds, got {g.until!r}")
    if not math.isfinite(g.until):
        raise ValueError(f"grant until must be a finite unix time in seconds, got {g.until!r}")
