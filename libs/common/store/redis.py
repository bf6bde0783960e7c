"""The ``redis://`` store: redis-py's asyncio client, one pool, Lua for every atomic update.

``redis+sentinel://`` URLs reach the same server through Sentinel (see ``sentinel.py``).

Each script, the store's own and those its owners bring (``scripts.py``), is registered once
per client and called by its SHA (redis-py loads it again by itself if the server forgot it,
e.g. after a restart). The calls made for every send (:meth:`RedisStore.claim`,
:meth:`RedisStore.set_many`) go out in one script call per turn of the event loop (see
``pipeline.py``), the claim steps owners bring composed into that script. Every key lives
under the prefix. Any
Redis failure (refused, timed out, a key of another kind) surfaces as :class:`StoreError`
with the operation and the server's address, never the password.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from libs.common.store import (
    Arg,
    Claim,
    RateLimit,
    Script,
    Step,
    StepCall,
    StoreError,
    Write,
    checks,
    sentinel,
)
from libs.common.store.connections import NotSent, pool_options
from libs.common.store.pipeline import Batches

log = structlog.get_logger(__name__)

_SCRIPTS = (
    "delete_if_equals",
    "rate_acquire",
    "stream_append",
    "stream_remove",
)

T = TypeVar("T")

MEMORY_KEY = "wxkf-store:memory"
"""When this Redis's present memory began (see ``lua/batch.lua``): one key for the server,
whatever prefix each client uses, since its memory is the server's."""


def _script(name: str) -> str:
    return resources.files(__package__).joinpath("lua", name + ".lua").read_text("utf-8")


def batch_source(steps: Sequence[Step[Any, Any]]) -> str:
    """``batch.lua`` with the claim steps its owners brought, each in ``STEPS[name]``."""
    parts = ["local STEPS = {}\n"]
    for step in steps:
        parts.append(f"STEPS['{step.name}'] = (function()\n{step.lua}\nend)()\n")
    parts.append(_script("batch"))
    return "".join(parts)


def _num(x: float) -> str:
    # repr is the shortest text that reads back as the same double: Lua compares exactly.
    return repr(float(x))


def describe(url: str) -> str:
    """Where a Redis URL points, without its credentials (for errors and logs)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    try:
        port = parts.port or 6379
    except ValueError:
        port = None
    db = parts.path.lstrip("/") or "0"
    return f"{parts.hostname or 'localhost'}:{port if port is not None else '?'}/{db}"


def _check_db(url: str, where: str) -> None:
    # redis-py silently ignores a database path that is not a number; say so instead.
    parts = urlsplit(url)
    db = parts.path.strip("/")
    if parts.scheme in ("redis", "rediss") and db and not db.isdigit():
        raise ValueError(f"store URL for {where} is malformed: database {db!r} is not a number")


class RedisStore:
    """A :class:`~libs.common.store.Store` on Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        where: str,
        also_close: Sentinel | None = None,
    ) -> None:
        self._r = client
        self._sentinels = also_close
        self._prefix = prefix
        self._where = where
        self._scripts = {name: client.register_script(_script(name)) for name in _SCRIPTS}
        self._owned: dict[str, tuple[str, AsyncScript]] = {}
        """The owners' scripts by name: their text, and the script registered for it."""
        self._steps: dict[str, Step[Any, Any]] = {}
        """The claim steps composed into the batch script, by name."""
        batch = client.register_script(batch_source(()))
        self._batched = Batches(client, batch, where=where, memory_key=MEMORY_KEY)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        prefix: str = "wxkf:",
        timeout_s: float = 2.0,
        max_connections: int = 64,
    ) -> RedisStore:
        """A store on ``url``; connections are opened on first use, so this never blocks.

        ``timeout_s`` bounds connecting and every reply. A call whose connection could not be
        made is tried once more; one that was sent is never repeated, whether it timed out
        or its connection broke (it may have run: a window slot taken twice would be lost
        to the user).
        """
        connection: dict[str, Any] = {
            "max_connections": max_connections,
            "timeout": timeout_s,
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            # Once more, and only when nothing was sent (see connections.py).
            "retry": Retry(
                ExponentialBackoff(cap=0.2, base=0.05), retries=1, supported_errors=(NotSent,)
            ),
        }
        if url.startswith(sentinel.SCHEME + "://"):
            try:
                target = sentinel.parse(url)
            except ValueError as exc:
                raise ValueError(f"store URL for sentinel is malformed: {exc}") from None
            client, sentinels = sentinel.client(target, **connection)
            where = target.describe()
            log.info("store.opened", backend="redis-sentinel", where=where, prefix=prefix)
            return cls(client, prefix=prefix, where=where, also_close=sentinels)
        where = describe(url)
        _check_db(url, where)
        try:
            # A blocking pool: a burst of callers waits for a free connection (up to the
            # timeout) instead of failing with "too many connections".
            pool = aioredis.BlockingConnectionPool(**pool_options(url, **connection))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"store URL for {where} is malformed: {exc}") from None
        client = aioredis.Redis.from_pool(pool)
        log.info("store.opened", backend="redis", where=where, prefix=prefix)
        return cls(client, prefix=prefix, where=where)

    @contextlib.contextmanager
    def _errors(self, op: str) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            reason = sentinel.explain(exc) or exc
            raise StoreError(f"redis {op} on {self._where} failed: {reason}") from exc

    def _k(self, key: str) -> str:
        return self._prefix + checks.key(key)

    async def _run(self, name: str, key: str, *args: str | int) -> Any:
        with self._errors(name):
            return await self._scripts[name](keys=[key], args=list(args))

    # -- plain keys ---------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        full = self._k(key)
        with self._errors("get"):
            value = await self._r.get(full)
        # Without decode_responses redis-py hands back bytes; the str arm is only its typing.
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        full, data = self._k(key), checks.value(value)
        px = None if ttl_s is None else checks.ttl_ms(ttl_s)
        with self._errors("set"):
            await self._r.set(full, data, px=px)

    async def set_if_absent(self, key: str, value: bytes, *, ttl_s: float) -> bool:
        return await self._set_nx("set_if_absent", key, checks.value(value), ttl_s)

    async def _set_nx(self, op: str, key: str, data: bytes, ttl_s: float) -> bool:
        full, px = self._k(key), checks.ttl_ms(ttl_s)
        with self._errors(op):
            return bool(await self._r.set(full, data, px=px, nx=True))

    async def delete(self, key: str) -> None:
        full = self._k(key)
        with self._errors("delete"):
            await self._r.delete(full)

    async def delete_if_equals(self, key: str, value: bytes) -> bool:
        return await self._del_eq("delete_if_equals", key, checks.value(value))

    async def _del_eq(self, op: str, key: str, data: bytes) -> bool:
        full = self._k(key)
        with self._errors(op):
            return bool(await self._scripts["delete_if_equals"](keys=[full], args=[data]))

    # -- locks ---------------------------------------------------------------------------------

    async def acquire_lock(self, key: str, owner: str, *, ttl_s: float) -> bool:
        return await self._set_nx("acquire_lock", key, checks.text("owner", owner).encode(), ttl_s)

    async def release_lock(self, key: str, owner: str) -> bool:
        return await self._del_eq("release_lock", key, checks.text("owner", owner).encode())

    # -- an owner's atomic update of one key -------------------------------------------------

    async def run(self, script: Script[Any, T], key: str, *args: Arg) -> T:
        full, values = self._k(key), checks.args(args)
        known = self._owned.get(script.name)
        if known is None or known[0] != script.lua:
            if known is not None:
                raise ValueError(f"two different scripts are named {script.name!r}")
            known = self._owned[script.name] = (script.lua, self._r.register_script(script.lua))
        argv = [_num(v) if isinstance(v, float) else v for v in values]
        with self._errors(script.name):
            reply = await known[1](keys=[full], args=argv)
        return script.read(reply)

    def _composed(self, step: Step[Any, Any]) -> None:
        """Make sure the batch script carries ``step`` (composed in once, on first use)."""
        known = self._steps.get(step.name)
        if known is not None and known.lua == step.lua:
            return
        if known is not None:
            raise ValueError(f"two different claim steps are named {step.name!r}")
        self._steps[step.name] = step
        self._batched.use(self._r.register_script(batch_source(list(self._steps.values()))))

    # -- rate limit ------------------------------------------------------------------------------

    async def rate_acquire(self, key: str, *, rate: float, burst: int, now: float) -> float:
        full, at = self._k(key), checks.now(now)
        per_s, cap = checks.rate(rate, burst)
        wait = await self._run("rate_acquire", full, _num(per_s), cap, _num(at))
        return float(wait)

    # -- several steps in one atomic call ------------------------------------------------------

    async def set_many(self, writes: Sequence[Write]) -> None:
        spec: list[Any] = ["set"]
        values: list[bytes] = []
        for write in writes:
            w = checks.write(write)
            spec += (self._k(w.key), len(w.value), _ttl_ms(w))
            values.append(w.value)
        if not values:
            return
        await self._batched.call("set_many", spec, values)

    async def claim(
        self,
        mark: Write,
        *,
        step: StepCall[T] | None = None,
        rate: RateLimit | None = None,
        also: Sequence[Write] = (),
        flag: str | None = None,
    ) -> Claim[T]:
        m = checks.write(mark)
        spec: list[Any]
        if step is None:
            spec = ["claim", "", "", ()]
        else:
            owned = checks.step(step)
            self._composed(owned.step)
            spec = ["claim", owned.step.name, self._k(owned.key), owned.args]
        if rate is not None:
            r = checks.rate_limit(rate)
            spec += (self._k(r.key), float(r.rate), r.burst, float(r.now))
        else:
            spec += ("", 0.0, 0, 0.0)
        spec.append("" if flag is None else self._k(flag))
        spec += (self._k(m.key), len(m.value), _ttl_ms(m))
        values = [m.value]
        for write in also:
            w = checks.write(write)
            spec += (self._k(w.key), len(w.value), _ttl_ms(w))
            values.append(w.value)
        answer = await self._batched.call("claim", spec, values)
        word, since, flagged = answer[0], float(answer[2]), bool(answer[3])
        if word == "known":
            return Claim(ok=False, known=answer[1], since=since, flagged=flagged)
        if word == "wait":
            return Claim(ok=False, wait_s=float(answer[1]), since=since, flagged=flagged)
        if step is None:
            return Claim(ok=True, since=since, flagged=flagged)
        said: T = step.step.read(answer[1])
        return Claim(ok=word == "ok", step=said, since=since, flagged=flagged)

    # -- streams ---------------------------------------------------------------------------------

    async def stream_append(self, stream: str, value: bytes, *, flag: str, limit: int) -> bool:
        full, data, flag_key = self._k(stream), checks.value(value), self._k(flag)
        with self._errors("stream_append"):
            added = await self._scripts["stream_append"](
                keys=[full, flag_key], args=[data, checks.limit(limit)]
            )
        return bool(added)

    async def stream_head(self, stream: str, *, count: int) -> list[tuple[str, bytes]]:
        full = self._k(stream)
        with self._errors("stream_head"):
            found = await self._r.xrange(full, count=checks.limit(count))
        head: list[tuple[str, bytes]] = []
        for entry, fields in found or ():
            value = (fields or {}).get(b"v")
            if entry is None or not isinstance(value, bytes):
                raise StoreError(f"redis stream_head on {self._where}: {stream} is not ours")
            head.append((_text(entry), value))
        return head

    async def stream_remove(self, stream: str, ids: Sequence[str], *, flag: str) -> int:
        full, flag_key = self._k(stream), self._k(flag)
        entries = [checks.text("entry id", entry) for entry in ids]
        with self._errors("stream_remove"):
            left = await self._scripts["stream_remove"](keys=[full, flag_key], args=entries)
        return int(left)

    async def ping(self) -> None:
        with self._errors("ping"):
            await self._r.ping()

    async def clear(self) -> int:
        pattern = _GLOB.sub(r"\\\g<0>", self._prefix) + "*"
        removed = 0
        with self._errors("clear"):
            batch: list[bytes | str] = []
            async for key in self._r.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    removed += await self._r.unlink(*batch)
                    batch = []
            if batch:
                removed += await self._r.unlink(*batch)
        return removed

    async def close(self) -> None:
        await self._batched.close()
        with self._errors("close"):
            try:
                await self._r.aclose()
            finally:
                if self._sentinels is not None:
                    await self._sentinels.aclose()


_GLOB = re.compile(r"[*?\[\]\\]")
"""What SCAN's MATCH pattern reads as a wildcard, escaped where the prefix has it."""


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _ttl_ms(w: Write) -> int:
    """A write's TTL in milliseconds for ``batch.lua``: 0 for none (a TTL is at least 1)."""
    return 0 if w.ttl_s is None else checks.ttl_ms(w.ttl_s)
