"""Atomic steps a store's owner supplies: the owner's rules, run where the data is.

A service whose state needs an update that reads and writes in one atomic step (the sender's
reply windows) brings that step itself, in both forms the store runs: Lua for Redis, and a
Python function over the ``memory://`` store's value of the key. The store stays a small,
generic state store; the rules live with the service that owns them, both forms side by
side, and one contract test runs them on both backends.

- a :class:`Script` runs alone over one key (:meth:`Store.run`);
- a :class:`Step` runs inside a claim (:meth:`Store.claim`), in the same atomic call and
  the same round trip as the claim's mark, rate token and writes: it is checked with
  everything else before anything is written, and committed only when the whole claim goes
  through.

Arguments are strings, integers and floats (a float reaches Lua as the same double).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec

Arg = str | int | float
Args = tuple[Arg, ...]

S = TypeVar("S")
"""The ``memory://`` store's value of the key (any Python object the owner defines)."""
T = TypeVar("T")
"""The step's answer."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Cell(Protocol[S]):
    """One key of the ``memory://`` store as a :class:`Script` sees it."""

    def get(self) -> S | None:
        """The key's value; None when absent or expired. A key holding another kind of
        value raises ``StoreError``, as Redis answers WRONGTYPE."""
        ...

    def put(self, value: S, *, ttl_s: float | None) -> None:
        """Store ``value`` (it may be the object :meth:`get` gave) to expire in ``ttl_s``."""
        ...


class Script(msgspec.Struct, Generic[S, T], frozen=True, kw_only=True):
    """An atomic update of one key, in both forms (see the module docstring)."""

    name: str
    """Names the script in errors (``redis <name> on <server> failed``)."""
    lua: str
    """Run with ``KEYS[1]``: the key (prefixed), ``ARGV``: the arguments."""
    read: Callable[[Any], T]
    """Redis's reply (as redis-py gives it: strings are bytes) → the answer."""
    state: type[S]
    """The class of the key's value in ``memory://``."""
    memory: Callable[[Cell[S], Args], T]
    """The same update over the ``memory://`` store's value; answers directly."""


class Step(msgspec.Struct, Generic[S, T], frozen=True, kw_only=True):
    """The owner's part of a claim, over one key, in both forms (see the module docstring).

    ``lua`` is a chunk that returns ``{check = function(key, args) ... end, commit =
    function(key, hold) ... end}``: ``check`` reads only and returns ``true, hold`` (the step
    can be had; ``hold`` is what ``commit`` needs) or ``false, refusal``; ``commit`` makes the
    step's writes and returns its answer. ``args`` is a Lua array of the arguments. Both the
    refusal and the answer become ``read``'s input (strings as ``str``, arrays as lists).
    ``check`` and ``commit`` do the same over the ``memory://`` store's key.
    """

    name: str
    """Lower-case letters, digits and underscores: the step's name inside the claim script."""
    lua: str
    read: Callable[[Any], T]
    state: type[S]
    check: Callable[[Cell[S], Args], tuple[bool, Any]]
    """Reads only: ``(True, hold)`` or ``(False, refusal)``."""
    commit: Callable[[Cell[S], Any], T]
    """Makes the step's writes from ``hold``; the answer."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"step name must match {_NAME.pattern}, got {self.name!r}")

    def on(self, key: str, *args: Arg) -> StepCall[T]:
        """This step over ``key`` with ``args``, for one claim."""
        return StepCall(step=self, key=key, args=args)


class StepCall(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """A :class:`Step` bound to its key and arguments (see :meth:`Step.on`)."""

    step: Step[Any, T]
    key: str
    args: Args
