"""The simulator's clock: every rule reads it, and tests move it instead of waiting."""

from __future__ import annotations

import time
from collections.abc import Callable


class SimClock:
    """Unix time that runs with the real clock (``ticking``) or stands still, and that
    tests and ``POST /sim/clock`` move forward (or set) at will."""

    def __init__(
        self,
        start: float | None = None,
        *,
        ticking: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self.ticking = ticking
        self._base = time.time() if start is None else float(start)
        self._base_mono = monotonic()

    def now(self) -> float:
        if not self.ticking:
            return self._base
        return self._base + (self._monotonic() - self._base_mono)

    def advance(self, seconds: float) -> float:
        """Move forward; the simulated world never runs backwards by ``advance``."""
        if seconds < 0:
            raise ValueError("the clock only advances: seconds must not be negative")
        self._base += seconds
        return self.now()

    def set(self, at: float) -> float:
        """Jump to ``at`` (unix seconds), forward or back."""
        if at < 0:
            raise ValueError("the clock cannot be set before 1970")
        self._base = float(at)
        self._base_mono = self._monotonic()
        return self.now()
