"""A blocked event loop fails the test: every callback the loop runs is timed, and one that
holds it longer than :data:`THRESHOLD_S` is a test failure.

A service shares one loop between every request and delivery, so a blocking call on it (a
``time.sleep``, a synchronous write of a big file, a subprocess waited for) stalls them all.
The integration and e2e suites run with the check on (their conftests), so such a call fails
them where it is made, not as a far-away timeout.

The timing is the one asyncio's debug mode does (``loop.slow_callback_duration``), without the
rest of debug mode: that records a traceback for every callback and task it schedules, which
made these suites three times slower and starved the store's connection pools under load.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any

import pytest

THRESHOLD_S = 0.15
"""Catches a ``time.sleep(0.2)`` or a synchronous write of tens of megabytes every time; a
loaded two-core machine stretches the longest honest callback of these suites (a module's
first import, a large JSON decode) to a few tens of milliseconds, well below it."""


class _GarbageCollections:
    """When the collector stopped the process, and for how long (the longer pauses only).

    A full collection in a test process that has run a few hundred tests takes a few tenths
    of a second, inside whatever callback allocated last: a pause of the test process, not a
    blocking call of the code under test, so it is not counted against the callback.
    """

    def __init__(self) -> None:
        self.pauses: collections.deque[tuple[float, float]] = collections.deque(maxlen=64)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._started = now
        elif now - self._started > 0.005:
            self.pauses.append((now, now - self._started))

    def within(self, start: float) -> float:
        """Seconds paused for collections that ended since ``start``."""
        return sum(length for end, length in self.pauses if end >= start)


_pauses = _GarbageCollections()
_seen: list[str] = []
_run = asyncio.Handle._run  # what the loop calls for each callback, timer callbacks included


def _timed_run(handle: asyncio.Handle) -> None:
    start = time.monotonic()
    _run(handle)
    took = time.monotonic() - start
    if took >= THRESHOLD_S:
        collecting = _pauses.within(start)
        if took - collecting >= THRESHOLD_S:
            _seen.append(f"{_describe(handle)} took {took:.3f}s ({collecting:.3f}s collecting)")


def _describe(handle: asyncio.Handle) -> str:
    # A task's step names the task, whose repr says where its coroutine now waits: the next
    # await after the blocking call.
    owner: Any = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
    return repr(owner) if isinstance(owner, asyncio.Task) else repr(handle)


@contextlib.contextmanager
def watching() -> Iterator[None]:
    """Every callback of every loop in this process timed while inside."""
    asyncio.Handle._run = _timed_run  # type: ignore[method-assign,assignment]
    gc.callbacks.append(_pauses)
    try:
        yield
    finally:
        gc.callbacks.remove(_pauses)
        asyncio.Handle._run = _run  # type: ignore[method-assign]


def check() -> None:
    """Fail with the slow callbacks seen since the last check, if any."""
    seen = _seen.copy()
    _seen.clear()
    if seen:
        lines = "\n".join(f"  {line}" for line in seen)
        pytest.fail(
            f"a callback blocked the event loop for more than {THRESHOLD_S}s "
            f"(tests/support/slow_callbacks.py):\n{lines}",
            pytrace=False,
        )


@pytest.fixture(scope="module", autouse=True)
def loop_timed() -> Iterator[None]:
    """Callbacks timed for a whole module: its module-scoped fixtures' included."""
    with watching():
        yield


@pytest.fixture(autouse=True)
def loop_never_blocked(loop_timed: None) -> Iterator[None]:
    """A callback that holds an event loop too long fails the test (a module fixture's, such
    as a system's start, the module's first test). A conftest imports both fixtures to turn
    the check on for its suite."""
    check()
    yield
    check()
