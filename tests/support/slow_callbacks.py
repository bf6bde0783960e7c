"""A blocked event loop fails the test: asyncio's debug mode times every callback, and one
that holds the loop longer than :data:`THRESHOLD_S` is a test failure.

A service shares one loop between every request and delivery, so a blocking call on it (a
``time.sleep``, a synchronous write of a big file, a DNS lookup) stalls them all. The
integration and e2e suites run with the check on (their conftests), so such a call fails
them where it is made, not as a far-away timeout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import time
from collections.abc import Iterator

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
        now = time.monotonic()  # the loop's clock
        if phase == "start":
            self._started = now
        elif now - self._started > 0.005:
            self.pauses.append((now, now - self._started))

    def within(self, seconds: float) -> float:
        """Seconds paused for collections that ended in the last ``seconds``."""
        since = time.monotonic() - seconds
        return sum(length for end, length in self.pauses if end >= since)


class _SlowCallbacks(logging.Handler):
    """What asyncio's debug mode said about callbacks over the loop's slow_callback_duration,
    less the garbage collections inside them."""

    def __init__(self, pauses: _GarbageCollections) -> None:
        super().__init__(level=logging.WARNING)
        self.seen: list[str] = []
        self._pauses = pauses

    def emit(self, record: logging.LogRecord) -> None:
        # base_events.py: logger.warning('Executing %s took %.3f seconds', handle, dt), as the
        # callback returns.
        if record.msg != "Executing %s took %.3f seconds":
            return
        assert isinstance(record.args, tuple)
        took = float(record.args[1])
        collecting = self._pauses.within(took)
        if took - collecting >= THRESHOLD_S:
            self.seen.append(f"{record.getMessage()} ({collecting:.3f}s of it collecting garbage)")


_collections = _GarbageCollections()
_slow = _SlowCallbacks(_collections)
# Installed once, for good: a test's logging configuration may raise the root's level, and
# the warning must still reach the handler.
gc.callbacks.append(_collections)
logging.getLogger("asyncio").addHandler(_slow)
logging.getLogger("asyncio").setLevel(logging.WARNING)


@contextlib.contextmanager
def watching(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Debug mode on ``loop`` while inside; a callback over the threshold is recorded."""
    debug, duration = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    loop.slow_callback_duration = THRESHOLD_S
    try:
        yield
    finally:
        loop.slow_callback_duration = duration
        loop.set_debug(debug)


def check() -> None:
    """Fail with the slow callbacks seen since the last check, if any."""
    seen, _slow.seen = _slow.seen, []
    if seen:
        lines = "\n".join(f"  {line}" for line in seen)
        pytest.fail(
            f"a callback blocked the event loop for more than {THRESHOLD_S}s "
            f"(tests/support/slow_callbacks.py):\n{lines}",
            pytrace=False,
        )
