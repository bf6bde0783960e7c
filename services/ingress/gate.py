"""A bound on the pushes one process handles at once.

A push takes its place once its body is read (within ``WXKF_READ_TIMEOUT_S``, so a client
that trickles its body never holds one). Beyond the bound a push is answered 503 at once:
WeChat sends it again later, nothing was published, and the process's memory stays bounded
however far the arrival rate runs ahead of what the broker confirms.
"""

from __future__ import annotations


class Gate:
    """Counts pushes in flight; :meth:`enter` says whether one more may come in."""

    __slots__ = ("in_flight", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def enter(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1
