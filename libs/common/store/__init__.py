"""The store: the few shared-state operations the services need, not a general key-value API.

Two backends, chosen by URL: ``redis://`` or ``redis+sentinel://`` (redis-py asyncio, Lua for
atomic updates) and ``memory://`` (one process). One behavioural test suite runs against both.
A service's own atomic rules (the sender's reply windows) are not here: it brings them as
scripts, in Lua and in Python side by side (``scripts.py``), and the store runs them.

Times are unix seconds (float) passed in by the caller, so tests and the simulator's clock
control them; TTLs are seconds. Bad arguments (a TTL that is not positive,
a rate that is not positive, an empty key) raise ``ValueError`` naming the argument,
before anything is written.

What the store remembers, it may forget: a Redis that restarts without its data, or a replica
that Sentinel promotes before it caught up with its primary, has lost writes. Every
:meth:`Store.claim` therefore also answers ``since``: when the store's present memory began.
A consumer that deduplicates by a key the store holds takes a missing key as proof that a
message is new only when the message cannot be older than that memory (:func:`forgotten`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar, overload

import msgspec

from libs.common.store.scripts import Arg, Args, Cell, Script, Step, StepCall

T = TypeVar("T")

__all__ = [
    "Arg",
    "Args",
    "Cell",
    "Claim",
    "RateLimit",
    "Script",
    "Step",
    "StepCall",
    "Store",
    "StoreError",
    "Write",
    "connect",
    "forgotten",
]


class StoreError(Exception):
    """The store could not be used (connection down, timeout, a key of another kind)."""


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


class Claim(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """What :meth:`Store.claim` got: everything (``ok``), or nothing and the first obstacle."""

    ok: bool
    known: bytes | None = None
    """The mark's key already held this value."""
    step: T | None = None
    """The owner's step's answer (a step was asked for): what it took, or, when ``ok`` is
    false and nothing is ``known``, why it refused."""
    wait_s: float = 0.0
    """The bucket has no token for this many seconds."""
    since: float = 0.0
    """Unix seconds (the store's own clock) when the store's present memory began; 0.0 for
    a memory that is never lost while the process that holds it lives (``memory://``)."""
    flagged: bool = False
    """The key named by ``flag`` existed, read in the same atomic step."""


def forgotten(claim: Claim[Any], born: float) -> bool:
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

    # -- an owner's atomic update of one key -----------------------------------------------------
    async def run(self, script: Script[Any, T], key: str, *args: Arg) -> T:
        """Run ``script`` over ``key`` atomically (one round trip on Redis): its answer."""
        ...

    # -- rate limit ------------------------------------------------------------------------------
    async def rate_acquire(self, key: str, *, rate: float, burst: int, now: float) -> float:
        """Token bucket shared by all replicas: 0.0 if a token was taken, else seconds to wait."""
        ...

    # -- several steps in one atomic call (one round trip on Redis) -----------------------------
    async def set_many(self, writes: Sequence[Write]) -> None:
        """Make every write of ``writes`` at once, in order (a later one of a key wins)."""
        ...

    @overload
    async def claim(
        self,
        mark: Write,
        *,
        step: None = None,
        rate: RateLimit | None = None,
        also: Sequence[Write] = (),
        flag: str | None = None,
    ) -> Claim[None]: ...

    @overload
    async def claim(
        self,
        mark: Write,
        *,
        step: StepCall[T],
        rate: RateLimit | None = None,
        also: Sequence[Write] = (),
        flag: str | None = None,
    ) -> Claim[T]: ...

    async def claim(
        self,
        mark: Write,
        *,
        step: StepCall[T] | None = None,
        rate: RateLimit | None = None,
        also: Sequence[Write] = (),
        flag: str | None = None,
    ) -> Claim[T]:
        """All or nothing, atomically: write ``mark`` unless its key exists, take the owner's
        ``step`` (see :class:`Step`), take a token from ``rate``, and make the ``also`` writes.

        When one of them cannot be had, nothing is written or taken and the first obstacle
        is answered, in this order: the mark's key exists (``known``), the step refuses
        (``step`` with its refusal), the bucket has no token yet (``wait_s``). Either
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
