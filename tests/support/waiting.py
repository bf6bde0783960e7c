"""Polled deadlines: wait until a condition holds, fail with what was last seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_DEADLINE_S = 20.0
"""Generous on purpose: the machine is shared; a pass is usually much faster."""


async def eventually(
    probe: Callable[[], T | Awaitable[T]],
    check: Callable[[T], bool] = bool,
    *,
    deadline_s: float = DEFAULT_DEADLINE_S,
    every_s: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``check(value)``; return that value, or fail at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = probe()
        if isinstance(value, Awaitable):
            value = await value
        if check(value):
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"{what} not reached within {deadline_s}s; last seen: {value!r}")
        await asyncio.sleep(every_s)
