"""A memory store whose ``set_many`` writes (ingress's "done" marks) land only when the test
says so: for showing what happens while such a write is on its way."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from libs.common.store import Write
from libs.common.store.memory import MemoryStore


class SlowDoneStore(MemoryStore):
    """``writing`` is set once a write has started; it lands after ``land`` is set."""

    def __init__(self) -> None:
        super().__init__(prefix="slow:")
        self.land = asyncio.Event()
        self.writing = asyncio.Event()

    async def set_many(self, writes: Sequence[Write]) -> None:
        self.writing.set()
        await self.land.wait()
        await super().set_many(writes)
