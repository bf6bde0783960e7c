"""The ``memory://`` store: the same semantics as Redis, for one process.

Every call runs to completion without awaiting, so each operation is atomic on the event loop
just as a Lua script is atomic in Redis; an owner's script or claim step runs its Python form
(see ``scripts.py``) over the key's value here. Key expiry follows ``clock`` (monotonic seconds
by default); rate-limit decisions follow the ``now`` the caller passes, like Redis.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from libs.common.store import (
    Arg,
    Claim,
    RateLimit,
    Script,
    StepCall,
    StoreError,
    Write,
    checks,
)

Clock = Callable[[], float]

_SWEEP_EVERY = 1024
"""Writes between two sweeps of expired keys, so keys nobody reads again do not pile up."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    ts: float


@dataclass(slots=True)
class _Stream:
    entries: dict[str, bytes] = field(default_factory=dict)
    """Entry id → value, oldest first (a dict keeps the order of insertion)."""
    last: int = 0


_Value = object
"""bytes, a bucket, a stream, or an owner's script's value."""
V = TypeVar("V")
T = TypeVar("T")


@dataclass(slots=True)
class _Entry:
    value: _Value
    expires_at: float | None


class _Space:
    """The data behind one ``memory://`` URL, shared by every prefix that uses it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.entries: dict[str, _Entry] = {}
        self.writes = 0
        self.since = 0.0
        """0.0 while this memory was never lost (it goes with the process), else when
        :meth:`MemoryStore.lose_everything` began it anew."""


class MemoryStore:
    """A :class:`~libs.common.store.Store` in this process's memory."""

    _spaces: ClassVar[dict[str, _Space]] = {}
    _instances: ClassVar[dict[tuple[str, str], MemoryStore]] = {}

    def __init__(
        self, *, prefix: str = "wxkf:", clock: Clock = time.monotonic, _space: _Space | None = None
    ) -> None:
        self._prefix = prefix
        self._space = _space if _space is not None else _Space(clock)

    @classmethod
    def shared(cls, url: str = "memory://", *, prefix: str = "wxkf:") -> MemoryStore:
        """The one store for ``url`` in this process (per prefix, over the same data).

        Every service of a one-process deployment that names the same URL sees the same keys,
        as they would on one Redis.
        """
        space = cls._spaces.get(url)
        if space is None:
            space = cls._spaces[url] = _Space(time.monotonic)
        instance = cls._instances.get((url, prefix))
        if instance is None:
            instance = cls._instances[(url, prefix)] = cls(prefix=prefix, _space=space)
        return instance

    @classmethod
    def forget(cls, url: str) -> None:
        """Drop the data and instances for ``url`` (tests that reuse a URL start clean)."""
        cls._spaces.pop(url, None)
        for url_prefix in [k for k in cls._instances if k[0] == url]:
            del cls._instances[url_prefix]

    def lose_everything(self) -> None:
        """Drop every key and begin a new memory, as a Redis restarted without its data does
        (for tests of what such a loss costs)."""
        self._space.entries.clear()
        self._space.since = time.time()

    # -- plumbing -------------------------------------------------------------------------------

    def _k(self, key: str) -> str:
        return self._prefix + checks.key(key)

    def _live(self, full_key: str) -> _Entry | None:
        entry = self._space.entries.get(full_key)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= self._space.clock():
            del self._space.entries[full_key]
            return None
        return entry

    def _typed(self, full_key: str, kind: type[V]) -> V | None:
        entry = self._live(full_key)
        if entry is None:
            return None
        if not isinstance(entry.value, kind):
            # Redis answers WRONGTYPE here; the same mistake must fail the same way.
            raise StoreError(f"key {full_key!r} holds another kind of value")
        return entry.value

    def _put(self, full_key: str, value: _Value, ttl_s: float | None) -> None:
        clock = self._space.clock()
        expires = None if ttl_s is None else clock + ttl_s
        self._space.entries[full_key] = _Entry(value, expires)
        self._space.writes += 1
        if self._space.writes % _SWEEP_EVERY == 0:
            self._sweep(clock)

    def _expire(self, full_key: str, ttl_s: float) -> None:
        entry = self._space.entries[full_key]
        entry.expires_at = self._space.clock() + ttl_s

    def _sweep(self, clock: float) -> None:
        entries = self._space.entries
        gone = [k for k, e in entries.items() if e.expires_at is not None and e.expires_at <= clock]
        for k in gone:
            del entries[k]

    # -- plain keys ---------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return self._typed(self._k(key), bytes)

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        full, data = self._k(key), checks.value(value)
        self._put(full, data, None if ttl_s is None else checks.ttl(ttl_s))

    async def set_if_absent(self, key: str, value: bytes, *, ttl_s: float) -> bool:
        full, data, ttl = self._k(key), checks.value(value), checks.ttl(ttl_s)
        if self._live(full) is not None:
            return False
        self._put(full, data, ttl)
        return True

    async def delete(self, key: str) -> None:
        self._space.entries.pop(self._k(key), None)

    async def delete_if_equals(self, key: str, value: bytes) -> bool:
        full, data = self._k(key), checks.value(value)
        if self._typed(full, bytes) != data:
            return False
        del self._space.entries[full]
        return True

    # -- locks ---------------------------------------------------------------------------------

    async def acquire_lock(self, key: str, owner: str, *, ttl_s: float) -> bool:
        return await self.set_if_absent(key, checks.text("owner", owner).encode(), ttl_s=ttl_s)

    async def release_lock(self, key: str, owner: str) -> bool:
        return await self.delete_if_equals(key, checks.text("owner", owner).encode())

    # -- an owner's atomic update of one key -------------------------------------------------

    async def run(self, script: Script[Any, T], key: str, *args: Arg) -> T:
        cell = _Cell(self, self._k(key), script.state)
        return script.memory(cell, checks.args(args))

    # -- rate limit ------------------------------------------------------------------------------

    async def rate_acquire(self, key: str, *, rate: float, burst: int, now: float) -> float:
        full, at = self._k(key), checks.now(now)
        per_s, cap = checks.rate(rate, burst)
        bucket = self._typed(full, _Bucket)
        if bucket is None:
            bucket = _Bucket(tokens=float(cap), ts=at)
            self._put(full, bucket, None)
        _refill(bucket, per_s, cap, at)
        wait = 0.0
        if bucket.tokens >= 1:
            bucket.tokens -= 1
        else:
            wait = (1 - bucket.tokens) / per_s
        # A bucket left alone refills completely; then forgetting it changes nothing.
        self._expire(full, cap / per_s + 1.0)
        return wait

    # -- several steps in one atomic call ------------------------------------------------------

    async def set_many(self, writes: Sequence[Write]) -> None:
        # All checked before the first write: a bad one writes nothing.
        checked = [(self._k(w.key), checks.write(w)) for w in writes]
        for full, w in checked:
            self._put(full, w.value, w.ttl_s)

    async def claim(
        self,
        mark: Write,
        *,
        step: StepCall[T] | None = None,
        rate: RateLimit | None = None,
        also: Sequence[Write] = (),
        flag: str | None = None,
    ) -> Claim[T]:
        # Every argument and every key's kind is checked before the first write, as the
        # Lua script reads everything before it writes.
        m = checks.write(mark)
        mark_key = self._k(m.key)
        owned = None if step is None else checks.step(step)
        step_key = None if owned is None else self._k(owned.key)
        r = None if rate is None else checks.rate_limit(rate)
        rate_key = None if r is None else self._k(r.key)
        extra = [(self._k(w.key), checks.write(w)) for w in also]
        flagged = flag is not None and self._live(self._k(flag)) is not None
        since = self._space.since

        known = self._typed(mark_key, bytes)
        if known is not None:
            return Claim(ok=False, known=known, since=since, flagged=flagged)
        hold: Any = None
        cell = None
        if owned is not None and step_key is not None:
            cell = _Cell(self, step_key, owned.step.state)
            ok, hold = owned.step.check(cell, owned.args)
            if not ok:
                refused: T = owned.step.read(hold)
                return Claim(ok=False, step=refused, since=since, flagged=flagged)
        bucket = None
        if r is not None and rate_key is not None:
            bucket = self._typed(rate_key, _Bucket)
            tokens = float(r.burst) if bucket is None else bucket.tokens
            if bucket is not None and r.now > bucket.ts:
                tokens = min(float(r.burst), tokens + (r.now - bucket.ts) * r.rate)
            if tokens < 1:
                return Claim(ok=False, wait_s=(1 - tokens) / r.rate, since=since, flagged=flagged)

        self._put(mark_key, m.value, m.ttl_s)
        taken = None if owned is None or cell is None else owned.step.commit(cell, hold)
        if r is not None and rate_key is not None:
            if bucket is None:
                bucket = _Bucket(tokens=float(r.burst), ts=r.now)
                self._put(rate_key, bucket, None)
            _refill(bucket, r.rate, r.burst, r.now)
            bucket.tokens -= 1
            self._expire(rate_key, r.burst / r.rate + 1.0)
        for full, w in extra:
            self._put(full, w.value, w.ttl_s)
        return Claim(ok=True, step=taken, since=since, flagged=flagged)

    # -- streams ---------------------------------------------------------------------------------

    async def stream_append(self, stream: str, value: bytes, *, flag: str, limit: int) -> bool:
        full, data, flag_key = self._k(stream), checks.value(value), self._k(flag)
        checks.limit(limit)
        found = self._typed(full, _Stream)
        if found is not None and len(found.entries) >= limit:
            return False
        if found is None:
            found = _Stream()
            self._put(full, found, None)
        found.last += 1
        found.entries[f"{found.last}-0"] = data
        self._put(flag_key, b"1", None)
        return True

    async def stream_head(self, stream: str, *, count: int) -> list[tuple[str, bytes]]:
        checks.limit(count)
        found = self._typed(self._k(stream), _Stream)
        if found is None:
            return []
        return list(itertools.islice(found.entries.items(), count))

    async def stream_remove(self, stream: str, ids: Sequence[str], *, flag: str) -> int:
        full, flag_key = self._k(stream), self._k(flag)
        found = self._typed(full, _Stream)
        left = 0
        if found is not None:
            for entry in ids:
                found.entries.pop(checks.text("entry id", entry), None)
            left = len(found.entries)
            if not left:
                self._space.entries.pop(full, None)
        if not left:
            self._space.entries.pop(flag_key, None)
        return left

    async def ping(self) -> None:
        return None

    async def clear(self) -> int:
        doomed = [k for k in self._space.entries if k.startswith(self._prefix)]
        for key in doomed:
            del self._space.entries[key]
        return len(doomed)

    async def close(self) -> None:
        # The data belongs to the URL, not to this handle: other services of the same process
        # may still use it, exactly as they would keep using a Redis server.
        return None


def _refill(bucket: _Bucket, per_s: float, cap: int, at: float) -> None:
    # Callers' clocks differ a little: a "now" older than the bucket's never refills it.
    if at > bucket.ts:
        bucket.tokens = min(float(cap), bucket.tokens + (at - bucket.ts) * per_s)
        bucket.ts = at


class _Cell(Generic[V]):
    """One key as an owner's script sees it (see ``scripts.Cell``)."""

    __slots__ = ("_full", "_kind", "_store")

    def __init__(self, store: MemoryStore, full_key: str, kind: type[V]) -> None:
        self._store = store
        self._full = full_key
        self._kind = kind

    def get(self) -> V | None:
        return self._store._typed(self._full, self._kind)

    def put(self, value: V, *, ttl_s: float | None) -> None:
        self._store._put(self._full, value, ttl_s)
