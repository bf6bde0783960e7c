"""Fault injection: make chosen API calls fail the ways WeChat and networks fail.

A rule applies to one path (or ``*``, every WeChat path) and yields faults either from a
``sequence`` consumed in order (then the rule is gone) or at a ``rate`` (probability per
call, from a seeded generator so runs repeat). Rules for a specific path are asked before
``*`` rules. A :class:`Fault` with nothing set lets the call through (a "pass" step in a
sequence).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import msgspec


class Fault(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One faulted call. ``latency_ms`` combines with any of the others, which exclude each
    other."""

    errcode: int | None = None
    """Answer HTTP 200 with this errcode (e.g. -1, 45009, 45011, 40001, 45015, 45047)."""
    errmsg: str | None = None
    status: int | None = None
    """Answer with this HTTP status (500, 502, 503, ...) and a gateway's HTML page."""
    latency_ms: float = 0.0
    """Answer this much later. A call that is processed (no errcode, status or drop) is
    processed at once: only its answer is late."""
    drop: bool = False
    """Close the connection without answering; nothing is delivered."""
    accept_then_drop: bool = False
    """Process the call normally (a send is delivered), then close without answering."""

    def __post_init__(self) -> None:
        chosen = [
            name
            for name, on in (
                ("errcode", self.errcode is not None),
                ("status", self.status is not None),
                ("drop", self.drop),
                ("accept_then_drop", self.accept_then_drop),
            )
            if on
        ]
        if len(chosen) > 1:
            raise ValueError(f"a fault is one of errcode, status, drop, accept_then_drop: {chosen}")
        if self.errcode == 0:
            raise ValueError("errcode 0 is success, not a fault: use {} to let a call through")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code (100-599)")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")

    @property
    def passes_through(self) -> bool:
        """The call is processed normally (possibly late, possibly without an answer)."""
        return self.errcode is None and self.status is None and not self.drop

    @property
    def passes(self) -> bool:
        return not (self.errcode is not None or self.status is not None or self.drop) and not (
            self.accept_then_drop or self.latency_ms
        )


class FaultRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What ``POST /sim/faults`` takes."""

    path: str = "*"
    sequence: list[Fault] = []
    rate: float = 0.0
    outcomes: list[Fault] = []
    """For a rate rule: each fired call takes one of these, chosen by the seeded generator."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.path != "*" and not self.path.startswith("/"):
            raise ValueError("path must be '*' or start with '/'")
        if bool(self.sequence) == bool(self.rate or self.outcomes):
            raise ValueError("a rule has either a non-empty sequence or a rate with outcomes")
        if not self.sequence:
            if not 0.0 < self.rate <= 1.0:
                raise ValueError("rate must be in (0, 1]")
            if not self.outcomes:
                raise ValueError("a rate rule needs at least one outcome")


class _Active:
    __slots__ = ("remaining", "rng", "rule")

    def __init__(self, rule: FaultRule) -> None:
        self.rule = rule
        self.remaining: deque[Fault] = deque(rule.sequence)
        self.rng = random.Random(rule.seed)  # noqa: S311 - fault draws, not security

    def draw(self) -> Fault | None:
        if self.rule.sequence:
            return self.remaining.popleft() if self.remaining else None
        if self.rng.random() < self.rule.rate:
            return self.rng.choice(self.rule.outcomes)
        return None

    @property
    def spent(self) -> bool:
        return bool(self.rule.sequence) and not self.remaining


class FaultPlan:
    def __init__(self) -> None:
        self._rules: list[_Active] = []

    def add(self, rule: FaultRule) -> None:
        self._rules.append(_Active(rule))

    def clear(self, path: str | None = None) -> int:
        before = len(self._rules)
        self._rules = [] if path is None else [a for a in self._rules if a.rule.path != path]
        return before - len(self._rules)

    def next(self, path: str) -> Fault | None:
        """The fault for this call (None: proceed normally); consumes sequence steps."""
        ordered = [a for a in self._rules if a.rule.path == path] + [
            a for a in self._rules if a.rule.path == "*"
        ]
        for active in ordered:
            fault = active.draw()
            if active.spent:
                self._rules.remove(active)
            if fault is not None:
                return None if fault.passes else fault
        return None

    def view(self) -> list[dict[str, Any]]:
        return [
            {
                "path": a.rule.path,
                "remaining": [msgspec.to_builtins(f) for f in a.remaining]
                if a.rule.sequence
                else None,
                "rate": a.rule.rate or None,
            }
            for a in self._rules
        ]
