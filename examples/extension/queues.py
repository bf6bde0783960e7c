"""The history service's own queues: declared by it, drained by it alone.

Two queues, because a queue binds to one exchange: the facts on ``kf.events`` and a copy of
the commands on ``kf.commands`` (the sender keeps its own copy on its own queue; an outcome
fact names its command but not what the command said, so the history keeps both).
"""

from __future__ import annotations

from libs.common.topology import COMMANDS, EVENTS, QueueSpec

HISTORY_EVENTS = QueueSpec(
    name="wxkf.ext.history",
    exchange=EVENTS,
    bindings=("msg.#", "event.#", "decision.#", "outbound.#", "media.archived"),
    max_attempts=8,
)
"""What users said and did, what the router decided, what became of each reply."""

HISTORY_COMMANDS = QueueSpec(
    name="wxkf.ext.history.commands",
    exchange=COMMANDS,
    bindings=("send.#",),
    max_attempts=8,
)
"""What wxkf was asked to say to users."""

HISTORY_QUEUES: tuple[QueueSpec, ...] = (HISTORY_EVENTS, HISTORY_COMMANDS)
