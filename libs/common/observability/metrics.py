"""Small helpers for metrics; each service defines its own metric objects.

Names follow ``wxkf_<service>_<thing>_<unit>``, with ``_total`` for counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Histogram buckets in seconds for answers that usually take milliseconds, up to WeChat's
5 s push deadline and a little past it."""


class Timer:
    """Measures a block with a monotonic clock; ``observe`` (e.g. ``hist.labels(...).observe``)
    gets the seconds when the block ends, also when it raises.

    ``with Timer(LATENCY.labels(api="send").observe) as t: ...`` then ``t.elapsed_s``.
    """

    __slots__ = ("_observe", "_start", "elapsed_s")

    def __init__(self, observe: Callable[[float], object] | None = None) -> None:
        self._observe = observe
        self._start = 0.0
        self.elapsed_s = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.elapsed_s = time.perf_counter() - self._start
        if self._observe is not None:
            self._observe(self.elapsed_s)
