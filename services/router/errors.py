"""Errors of the router: a rules file that cannot be used, and bad input to ``wxkf rules``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import msgspec

Path = tuple[str | int, ...]
"""Where in the rules document: keys and list indexes from the top, e.g. ("rules", 3, "match")."""


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One mistake in a rules file, with its place (1-based line and column; 0 when unknown)."""

    message: str
    path: Path = ()
    line: int = 0
    column: int = 0

    def where(self) -> str:
        return ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in self.path).replace(
            ".[", "["
        )

    def render(self, source: str) -> str:
        place = f"{source}:{self.line}:{self.column}" if self.line else source
        where = self.where()
        return f"{place}: {self.message}" + (f" (at {where})" if where else "")


class RulesError(Exception):
    """The rules file cannot be used; ``problems`` says every mistake found and where."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render(source) for p in self.problems))


class EventInputError(Exception):
    """``wxkf rules test`` was given a push or event it cannot read."""


class SpecError(ValueError):
    """One part of the rules file is well-formed but unusable; ``path`` is relative to it."""

    def __init__(self, message: str, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


@contextmanager
def within(*prefix: str | int) -> Iterator[None]:
    """Re-raise a :class:`SpecError` from inside this block with its path under ``prefix``."""
    try:
        yield
    except SpecError as exc:
        raise SpecError(exc.message, (*prefix, *exc.path)) from None
