"""The claims and set_many calls made in one turn of the event loop, in one script call.

Many deliveries in flight each make a call at nearly the same moment. Gathered per loop turn
and sent as one run of ``batch.lua`` (one command, one connection taken from the pool, one
reply to read: the answers packed with msgpack), they cost the client a fraction of what as
many commands do, even pipelined: redis-py packs and parses every command and every element
of every answer in Python. Each call is still all or nothing on its own, in the order made,
and has its own answer or error; nothing waits for anything but the loop's next turn, and a
batch in flight never holds up the next one (each takes its own connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from libs.common.store import StoreError, sentinel

MAX_BATCH = 64
"""Calls per script run: a burst beyond it goes out as several runs, concurrently."""

Op = Literal["claim", "set_many"]

_answers = msgspec.msgpack.Decoder(list[list[Any]])


class _Call:
    __slots__ = ("future", "op", "spec", "values")

    def __init__(
        self, op: Op, spec: list[Any], values: Sequence[bytes], future: asyncio.Future[list[Any]]
    ) -> None:
        self.op = op
        self.spec = spec
        self.values = values
        self.future = future


class Batches:
    """Runs calls of ``batch.lua`` gathered per loop turn (see the module docstring)."""

    def __init__(
        self, client: aioredis.Redis, script: AsyncScript, *, where: str, memory_key: str
    ) -> None:
        self._r = client
        self._script = script
        self._where = where
        self._memory_key = memory_key
        self._waiting: list[_Call] = []
        self._running: set[asyncio.Task[None]] = set()

    def use(self, script: AsyncScript) -> None:
        """Run the batches flushed from now on with ``script`` (the same calls, and more claim
        steps composed in)."""
        self._script = script

    async def call(self, op: Op, spec: list[Any], values: Sequence[bytes]) -> list[Any]:
        """Run one call as ``batch.lua`` describes it: ``spec`` names its keys, numbers and the
        lengths of ``values``. Its answer (a ``known`` answer carries its value as bytes), or
        :class:`StoreError` naming ``op`` when Redis failed or the call did."""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._flush)
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append(_Call(op, spec, values, future))
        answer = await future
        if answer[0] == "err":
            raise StoreError(f"redis {op} on {self._where} failed: {answer[1]}")
        return answer

    async def close(self) -> None:
        """Wait for the batches in flight (their callers get their answers or errors)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        loop = asyncio.get_running_loop()
        for start in range(0, len(waiting), MAX_BATCH):
            task = loop.create_task(self._send(waiting[start : start + MAX_BATCH]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[_Call]) -> None:
        calls = msgspec.msgpack.encode([c.spec for c in batch])
        values = b"".join(v for c in batch for v in c.values)
        try:
            # The script object loads the script itself when the server does not know it
            # (first use, or restarted or flushed since): that run did not happen, so it is
            # made once more.
            reply = await self._script(args=[calls, values, self._memory_key], client=self._r)
            answers = _answers.decode(reply[0])
            if len(answers) != len(batch):
                raise msgspec.ValidationError(f"{len(answers)} answers to {len(batch)} calls")
        except (RedisError, OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            for c in batch:
                self._fail(c, exc)
            return
        except BaseException as exc:
            # Cancelled (the loop is closing) or a bug: no caller is left waiting forever.
            for c in batch:
                self._fail(c, exc)
            raise
        for c, answer in zip(batch, answers, strict=True):
            if answer[0] == "known":
                answer[1] = reply[answer[1]]
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
        elif isinstance(exc, msgspec.DecodeError | msgspec.ValidationError):
            c.future.set_exception(StoreError(f"redis {c.op} on {self._where}: bad answer"))
        else:
            c.future.set_exception(StoreError(f"redis {c.op} on {self._where} was interrupted"))
