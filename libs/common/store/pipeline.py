"""Script calls made in the same turn of the event loop, sent to Redis together.

Many deliveries in flight each call a script at nearly the same moment; one pipeline (one
write, one connection taken from the pool, the answers read in one pass) costs the client
a fraction of what as many separate round trips do. Each script still runs atomically on
the server, on its own; nothing waits for anything but the loop's next turn, and a batch in
flight never holds up the next one (each takes its own connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from libs.common.store import StoreError, sentinel

MAX_BATCH = 64
"""Calls per pipeline: a burst beyond it goes out as several pipelines, concurrently."""

Arg = bytes | str | int


class _Call:
    __slots__ = ("args", "future", "keys", "op", "script")

    def __init__(
        self,
        op: str,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[Arg],
        future: asyncio.Future[Any],
    ) -> None:
        self.op = op
        self.script = script
        self.keys = keys
        self.args = args
        self.future = future


class ScriptPipeline:
    """Runs :class:`AsyncScript` calls batched per loop turn (see the module docstring)."""

    def __init__(self, client: aioredis.Redis, *, where: str) -> None:
        self._r = client
        self._where = where
        self._waiting: list[_Call] = []
        self._running: set[asyncio.Task[None]] = set()

    async def call(
        self, op: str, script: AsyncScript, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """The script's answer; :class:`StoreError` naming ``op`` when Redis failed."""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._flush)
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append(_Call(op, script, keys, args, future))
        return await future

    async def close(self) -> None:
        """Wait for the batches in flight (their callers get their answers or errors)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), MAX_BATCH):
            task = asyncio.get_running_loop().create_task(
                self._send(waiting[start : start + MAX_BATCH])
            )
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[_Call]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for c in batch:
            pipe.execute_command("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
        try:
            answers = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            for c in batch:
                self._fail(c, exc)
            return
        except BaseException as exc:
            # Cancelled (the loop is closing) or a bug: no caller is left waiting forever.
            for c in batch:
                self._fail(c, exc)
            raise
        unknown: list[_Call] = []
        for c, answer in zip(batch, answers, strict=True):
            if isinstance(answer, NoScriptError):
                unknown.append(c)
            elif isinstance(answer, RedisError):
                self._fail(c, answer)
            elif not c.future.done():
                c.future.set_result(answer)
        # The server does not know the script (first use, or restarted or flushed since):
        # each script object loads it and runs its call, on a round trip of its own.
        await asyncio.gather(*(self._alone(c) for c in unknown))

    async def _alone(self, c: _Call) -> None:
        try:
            answer = await c.script(keys=list(c.keys), args=list(c.args))
        except (RedisError, OSError) as exc:
            self._fail(c, exc)
            return
        if not c.future.done():
            c.future.set_result(answer)

    def _fail(self, c: _Call, exc: BaseException) -> None:
        if c.future.done():
            return
        if isinstance(exc, RedisError | OSError):
            reason = sentinel.explain(exc) or exc
            error = StoreError(f"redis {c.op} on {self._where} failed: {reason}")
            error.__cause__ = exc
            c.future.set_exception(error)
        else:
            c.future.set_exception(StoreError(f"redis {c.op} on {self._where} was interrupted"))
