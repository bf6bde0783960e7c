"""The simulated WeChat's memory kept in a file between runs (``wxkf sim api --state FILE``).

WeChat remembers across a restart of wxkf what it handed out and what users did: access
tokens, reply windows, what each user received, temporary media. ``wxkf up`` keeps Redis and
the broker's queues between runs, so its simulator keeps this too, or a restarted system would
meet a WeChat that refuses its stored token (40001) and every window it knew open (45015).

Saved when the simulator stops gracefully, read when it starts. Fault rules and the counters
of ``/sim/stats`` are not kept: they belong to one run. A file saved for another appid is not
read (it would hold another mini program's users).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec

from services.simulator.clock import SimClock
from services.simulator.config import SimConfig
from services.simulator.media import Media
from services.simulator.state import SimState
from services.simulator.tokens import Endpoint, TokenRecord
from services.simulator.users import Delivered, Grant, GrantKind, User

VERSION = 1


class SavedToken(msgspec.Struct, frozen=True, kw_only=True):
    value: str
    endpoint: Endpoint
    issued_at: float
    expires_at: float
    natural: bool


class SavedGrant(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    until: float


class SavedUser(msgspec.Struct, frozen=True, kw_only=True):
    openid: str
    grants: dict[GrantKind, SavedGrant]
    last_exchange: float | None
    typing_until: float | None
    inbox: list[Delivered]
    messages_sent: int
    entered: int
    refused: dict[int, int] = {}


class Saved(msgspec.Struct, frozen=True, kw_only=True):
    version: int = VERSION
    appid: str
    clock_offset_s: float
    """How far the simulated clock was ahead of the real one (``POST /sim/clock``)."""
    tokens: list[SavedToken]
    current: dict[Endpoint, str]
    forced_per_day: dict[int, int]
    last_forced_at: float | None
    users: list[SavedUser]
    media: list[Media]


class SavedStateError(Exception):
    """The saved state cannot be read; the message names the file and what to do."""


def dump(state: SimState) -> bytes:
    book = state.tokens
    saved = Saved(
        appid=state.config.appid,
        clock_offset_s=state.now() - time.time(),
        tokens=[
            SavedToken(
                value=r.value,
                endpoint=r.endpoint,
                issued_at=r.issued_at,
                expires_at=r.expires_at,
                natural=r.natural,
            )
            for r in book.records.values()
        ],
        current={endpoint: r.value for endpoint, r in book.current.items()},
        forced_per_day=dict(book.forced_per_day),
        last_forced_at=book.last_forced_at,
        users=[
            SavedUser(
                openid=u.openid,
                grants={k: SavedGrant(count=g.count, until=g.until) for k, g in u.grants.items()},
                last_exchange=u.last_exchange,
                typing_until=u.typing_until,
                inbox=list(u.inbox),
                messages_sent=u.messages_sent,
                entered=u.entered,
                refused=dict(u.refused),
            )
            for u in state.users.values()
        ],
        media=list(state.media.items.values()),
    )
    return msgspec.json.encode(saved)


def restore(config: SimConfig, data: bytes, *, source: str) -> SimState | None:
    """The state saved in ``data``, running on from where it stopped; None when it was saved
    for another appid. Raises :class:`SavedStateError` when ``data`` is not a saved state."""
    try:
        saved = msgspec.json.decode(data, type=Saved)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SavedStateError(
            f"{source} is not a saved simulator state ({exc}); delete it to start empty"
        ) from None
    if saved.version != VERSION:
        raise SavedStateError(
            f"{source} was saved by another version of the simulator; delete it to start empty"
        )
    if saved.appid != config.appid:
        return None
    state = SimState(config, clock=SimClock(time.time() + saved.clock_offset_s))
    book = state.tokens
    for t in saved.tokens:
        book.records[t.value] = TokenRecord(
            value=t.value,
            endpoint=t.endpoint,
            issued_at=t.issued_at,
            expires_at=t.expires_at,
            natural=t.natural,
        )
    book.current = {e: book.records[v] for e, v in saved.current.items() if v in book.records}
    book.forced_per_day = dict(saved.forced_per_day)
    book.last_forced_at = saved.last_forced_at
    for u in saved.users:
        state.users[u.openid] = User(
            openid=u.openid,
            grants={k: Grant(count=g.count, until=g.until) for k, g in u.grants.items()},
            last_exchange=u.last_exchange,
            typing_until=u.typing_until,
            inbox=list(u.inbox),
            messages_sent=u.messages_sent,
            entered=u.entered,
            refused=dict(u.refused),
        )
    state.media.items = {m.media_id: m for m in saved.media}
    return state


def load(config: SimConfig, path: Path) -> SimState | None:
    """The state saved at ``path``; None when there is none (or it is another appid's)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SavedStateError(f"cannot read {path}: {exc.strerror}") from None
    return restore(config, data, source=str(path))


def save(state: SimState, path: Path) -> None:
    """Write the state to ``path`` whole or not at all (a new file renamed over the old)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(dump(state))
    os.replace(partial, path)
