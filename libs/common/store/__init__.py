"""The store: the few shared-state operations the services need, not a general key-value API.

Two backends, chosen by URL: ``redis://`` or ``redis+sentinel://`` (redis-py asyncio, Lua for
atomic updates) and ``memory://`` (one process). One behavioural test suite runs against both.

Times are unix seconds (float) passed in by the caller, so tests and the simulator's clock
control them; TTLs are seconds. Bad arguments (a TTL that is not positive, an unknown grant
kind, a rate that is not positive, an empty key) raise ``ValueError`` naming the argument,
before anything is written.

What the store remembers, it may forget: a Redis that restarts without its data, or a replica
that Sentinel promotes before it caught up with its primary, has lost writes. Every
:meth:`Store.claim` therefore also answers ``since``: when the store's present memory began.
A consumer that deduplicates by a key the store holds takes a missing key as proof that a
message is new only when the message cannot be older than that memory (:func:`forgotten`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

__all__ = [
    "GRANT_KINDS",
    "WINDOW_LINGER_S",
    "Claim",
    "Grant",
    "GrantKind",
    "RateLimit",
    "Store",
    "StoreError",
    "WindowTake",
    "Write",
    "connect",
    "forgotten",
]


class StoreError(Exception):
    """The store could not be used (connection down, timeout, a key of another kind)."""


GrantKind = Literal["message", "enter"]
GRANT_KINDS: tuple[GrantKind, ...] = ("message", "enter")

WINDOW_LINGER_S = 24 * 3600.0
"""How long a window key outlives its latest grant's ``until``: within it a take says
``window_expired``; after it the key is gone and a take says ``no_window``."""


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
    reason: Literal["no_window", "window_expired", "quota_exhausted"] | None = None
    remaining: int = 0


class Write(msgspec.Struct, frozen=True, kw_only=True):
    """One plain key to write: ``value`` for ``ttl_s`` seconds (None: until deleted)."""

    key: str
    value: bytes
    ttl_s: float | None = None


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    """One token from the shared bucket ``key`` at ``now`` (as :meth:`Store.rate_acquire`)."""

    key: str
    rate: float
    burst: int
    now: float


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Store.claim` got: everything (``ok``), or nothing and the first obstacle."""

    ok: bool
    known: bytes | None = None
    """The mark's key already held this value."""
    window: WindowTake | None = None
    """The window's answer: the slot taken, or why there is none (a window was asked for)."""
    wait_s: float = 0.0
    """The bucket has no token for this many seconds."""
    since: float = 0.0
    """Unix seconds (the store's own clock) when the store's present memory began; 0.0 for
    a memory that is never lost while the process that holds it lives (``memory://``)."""
    flagged: bool = False
    """The key named by ``flag`` existed, read in the same atomic step."""


def forgotten(claim: Claim, born: float) -> bool:
    """Whether the store may have forgotten something of an item made at ``born`` (unix
    seconds): its present memory began after the item was made.

    Also true for the items of a brand-new store's first moments, which nothing can tell
    from those of a store that lost its data; callers use it only for a copy that may
    repeat one handled before, which a brand-new deployment has hardly any of.
    """
    return born < claim.since


class Store(Protocol):
    # -- plain keys ---------------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None: ...
    async def set_if_absent(self, key: str, value: bytes, *, ttl_s: float) -> bool:
        """True when this call created the key (dedupe, first writer wins)."""
        ...

    async def delete(self, key: str) -> None: ...
    async def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete only while the key still holds ``value`` (release what you own)."""
        ...

    # -- locks ---------------------------------------------------------------------------------
    async def acquire_lock(self, key: str, owner: str, *, ttl_s: float) -> bool: ...
    async def release_lock(self, key: str, owner: str) -> bool:
        """Release only if ``owner`` still holds it; False when it expired or was taken."""
        ...

    # -- reply windows (atomic per user) -------------------------------------------------------
    async def window_grant(self, key: str, grant: Grant, *, now: float) -> None:
        """Open or renew the grant of this kind (replacing the previous one of that kind).

        Replaced only by a grant whose ``until`` is strictly later than the one issued before
        (:meth:`window_close` does not move that mark), so a redelivered event never resets a
        count already used nor reopens a window WeChat closed. The key lives until
        :data:`WINDOW_LINGER_S` after the latest ``until``.
        """
        ...

    async def window_take(self, key: str, *, now: float) -> WindowTake:
        """Reserve one slot from the valid grant that expires first, atomically.

        A grant is valid while ``until > now`` and its count is above 0. When none is:
        ``no_window`` (no grant recorded, or the key is gone), ``quota_exhausted`` (a grant is
        still in time but used up), else ``window_expired``.
        """
        ...

    async def window_room(self, key: str, *, now: float) -> WindowTake:
        """What :meth:`window_take` would answer now, taking nothing: a check that must not
        hold a slot a concurrent send may need (``remaining``: the slots left before a take).
        """
        ...

    async def window_release(self, key: str, kind: GrantKind, *, now: float) -> None:
        """Give back a slot taken from ``kind`` (WeChat definitely did not deliver).

        Only while that grant is still valid, and never above the count it was granted.
        """
        ...

    async def window_close(
        self, key: str, *, now: float, reason: Literal["window_expired", "quota_exhausted"]
    ) -> None:
        """WeChat refused (45015/45047) although our view allowed: correct our view.

        ``quota_exhausted`` sets every grant's count to 0; ``window_expired`` ends every grant
        still open at ``now``. Either way a later grant (a new user message) renews.
        """
        ...

    # -- rate limit ------------------------------------------------------------------------------
    async def rate_acquire(self, key: str, *, rate: float, burst: int, now: float) -> float:
        """Token bucket shared by all replicas: 0.0 if a token was taken, else seconds to wait."""
        ...

    # -- several steps in one atomic call (one round trip on Redis) -----------------------------
    async def set_many(self, writes: Sequence[Write]) -> None:
        """Make every write of ``writes`` at once, in order (a later one of a key wins)."""
        ...

    async def claim(
        self,
        mark: Write,
        *,
        window: str | None = None,
        now: float | None = None,
        rate: RateLimit | None = None,
        also: Sequence[Write] = (),
        flag: str | None = None,
    ) -> Claim:
        """All or nothing, atomically: write ``mark`` unless its key exists, take a slot of
        the reply window ``window`` (as :meth:`window_take` at ``now``, which it then needs),
        take a token from ``rate``, and make the ``also`` writes.

        When one of them cannot be had, nothing is written or taken and the first obstacle
        is answered, in this order: the mark's key exists (``known``), the window has no
        slot (``window`` with its reason), the bucket has no token yet (``wait_s``). Either
        way the answer says whether the key ``flag`` exists and when the store's memory
        began (``since``).
        """
        ...

    # -- streams: durable lists, oldest first ------------------------------------------------------
    async def stream_append(self, stream: str, value: bytes, *, flag: str, limit: int) -> bool:
        """Add ``value`` at the end of ``stream`` and set the key ``flag`` (no TTL), unless the
        stream already holds ``limit`` entries: then False, and nothing written."""
        ...

    async def stream_head(self, stream: str, *, count: int) -> list[tuple[str, bytes]]:
        """The oldest ``count`` entries of ``stream``, as ``(entry id, value)``."""
        ...

    async def stream_remove(self, stream: str, ids: Sequence[str], *, flag: str) -> int:
        """Remove these entries; when none is left, delete ``flag`` in the same step. How
        many entries remain."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers now."""
        ...

    async def clear(self) -> int:
        """Delete every key under this store's prefix; how many. For a local run that starts
        clean (``wxkf up --fresh``): no service calls it."""
        ...

    async def close(self) -> None: ...


async def connect(url: str, *, prefix: str = "wxkf:") -> Store:
    """The backend for ``url``: ``redis://``/``rediss://``/``unix://``, ``redis+sentinel://``
    (the primary that Sentinel names, followed through failovers) or ``memory://``."""
    if url.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
        from libs.common.store.redis import RedisStore

        return await RedisStore.connect(url, prefix=prefix)
    if url.startswith("memory://"):
        from libs.common.store.memory import MemoryStore

        return MemoryStore.shared(url, prefix=prefix)
    raise ValueError(
        f"unsupported store URL scheme {url.split('://')[0]!r}: use redis://, "
        "redis+sentinel:// or memory://"
    )
