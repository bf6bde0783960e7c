"""The history service's own queues: declared by it, drained by it alone.

Two queues, because a queue binds to one exchange: the facts on ``kf.events`` and a copy of
the commands on ``kf.commands`` (the sender keeps its own copy on its own queue; an outcome
fact names its command but not what the command said, so the history keeps both).

Every queue bound to a key gets its own copy of each message: instances that share a queue
name share the work, and a second, independent history (another database) takes a queue name
of its own (``WXKF_HISTORY_QUEUE``).
"""

from __future__ import annotations

from libs.common.topology import COMMANDS, EVENTS, QueueSpec

DEFAULT_QUEUE = "wxkf.ext.history"

EVENT_BINDINGS = ("msg.#", "event.#", "decision.#", "outbound.#", "media.archived")
"""What users said and did, what the router decided, what became of each reply."""
COMMAND_BINDINGS = ("send.#",)
"""What wxkf was asked to say to users."""

MAX_ATTEMPTS = 8
"""With the bus's default backoff (1 s doubling), a database that stays locked or full is
tried for about two minutes before a message goes to the dead-letter queue."""


DEFAULT_MAX_LENGTH = 10_000
"""Messages each queue keeps while the history is stopped (the newest; see ``max_length``)."""


def history_queues(
    name: str = DEFAULT_QUEUE, *, max_length: int = DEFAULT_MAX_LENGTH
) -> tuple[QueueSpec, QueueSpec]:
    """The events queue ``name`` and the commands queue ``name.commands``, each keeping at
    most ``max_length`` messages: wxkf runs on while the history is stopped, and its queues
    must not fill the broker meanwhile."""
    return (
        QueueSpec(
            name=name,
            exchange=EVENTS,
            bindings=EVENT_BINDINGS,
            max_attempts=MAX_ATTEMPTS,
            max_length=max_length,
        ),
        QueueSpec(
            name=name + ".commands",
            exchange=COMMANDS,
            bindings=COMMAND_BINDINGS,
            max_attempts=MAX_ATTEMPTS,
            max_length=max_length,
        ),
    )
