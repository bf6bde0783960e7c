"""Counters of what callers did to the simulated WeChat, for tests and ``GET /sim/stats``."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


class Stats:
    def __init__(self) -> None:
        self.calls: defaultdict[str, Counter[str]] = defaultdict(Counter)
        """Per path: ``"0"`` and each errcode answered, ``"http_<status>"`` for injected HTTP
        errors, ``"dropped"`` for connections closed without an answer."""
        self.tokens: Counter[str] = Counter()
        """Token calls per endpoint (``token``, ``stable_token``) and stable_token outcomes
        (``stable_new``, ``stable_same``, ``stable_rotated``, ``stable_forced``,
        ``stable_force_ignored``)."""
        self.faults = 0
        self.delivered = 0

    def count(self, path: str, outcome: int | str) -> None:
        self.calls[path][str(outcome)] += 1

    def total(self, path: str, outcome: int | str | None = None) -> int:
        per = self.calls.get(path, Counter())
        return per.total() if outcome is None else per[str(outcome)]

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": {path: dict(per) for path, per in sorted(self.calls.items())},
            "tokens": dict(self.tokens),
            "faults": self.faults,
            "delivered": self.delivered,
        }
