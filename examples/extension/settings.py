"""The history service's settings: ``WXKF_*`` variables, checked before a port is bound."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from examples.extension.queues import DEFAULT_MAX_LENGTH, DEFAULT_QUEUE
from libs.common.settings import CommonSettings

QUEUE_NAME = r"^(?!amq\.)[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$"
"""Letters, digits, ``.``, ``_``, ``-``; not ``amq.`` (the broker's own prefix)."""

IN_MEMORY = ":memory:"
"""SQLite's name for a database that lives and dies with the process (trials, tests)."""


class HistorySettings(CommonSettings, frozen=True, kw_only=True):
    """``WXKF_APPID`` and ``WXKF_BUS_URL`` as every service, plus the history's own.

    The appid says whose conversations the API reads by default (an openid names a user of
    one mini program only); the store URL is not used.
    """

    history_db: str
    """Path of the SQLite file, created when missing (its directory must exist)."""
    history_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8086
    history_queue: Annotated[str, msgspec.Meta(pattern=QUEUE_NAME)] = DEFAULT_QUEUE
    """The events queue's name; the commands queue is ``<name>.commands``. Instances that
    share a name share the work; another name gets every message again."""
    history_queue_max: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_LENGTH
    """Messages each queue keeps while the history is stopped: the newest; older ones are
    dropped (dead-lettered as ``maxlen``, and the dead-letter queue keeps as many)."""
    history_prefetch: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 32
    """Deliveries in flight per queue; the writes themselves go one at a time."""
    history_page_max: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    """The largest ``limit`` a conversation request may ask for."""
    history_busy_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    """How long a write waits for a lock another process holds (the sqlite3 CLI, a backup)
    before the delivery is retried later through the bus."""

    def __post_init__(self) -> None:
        # A ValueError ending in msgspec's " - at `$.field`" becomes settings.load's one-line
        # error naming the variable.
        problem = _db_problem(self.history_db)
        if problem:
            raise ValueError(f"{problem} - at `$.history_db`")


def _db_problem(raw: str) -> str | None:
    if not raw.strip():
        return "must name a file (or :memory:)"
    if raw == IN_MEMORY:
        return None
    path = Path(raw)
    if path.is_dir():
        return f"{raw!r} is a directory, not a database file"
    if not path.parent.is_dir():
        return f"the directory of {raw!r} does not exist"
    return None
