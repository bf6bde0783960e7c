"""The broker's word that it blocks a connection's publishes, while a memory or disk alarm lasts.

RabbitMQ sends ``connection.blocked`` and, once the alarm clears, ``connection.unblocked``.
aiormq acts on both (its writer holds the connection's frames meanwhile) but reports them
only through its logger, with the connection as the first argument: this filter on that
logger hands each report to whoever registered the connection, and keeps aiormq's own
unstructured line out of the logs (the bus logs its own).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

Listener = Callable[[bool, str], None]
"""``(blocked, reason)``: called for each report about a registered connection."""

_BLOCKED = "Connection %r was blocked by: %r"
_UNBLOCKED = "Connection %r was unblocked"


class BlockedReports(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._listeners: weakref.WeakKeyDictionary[object, Listener] = weakref.WeakKeyDictionary()

    def register(self, connection: object, listener: Listener) -> None:
        self._listeners[connection] = listener

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in (_BLOCKED, _UNBLOCKED) or not record.args:
            return True
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        listener = self._listeners.get(args[0])
        if listener is None:
            return True
        reason = str(args[1]) if record.msg == _BLOCKED and len(args) > 1 else ""
        listener(record.msg == _BLOCKED, reason)
        return False


REPORTS = BlockedReports()
logging.getLogger("aiormq.connection").addFilter(REPORTS)
