"""What a handler may raise instead of returning; only the bus adapter acts on them."""

from __future__ import annotations


class Retry(Exception):
    """Transient failure: deliver again later through a delay queue (capped backoff).

    After the queue's last attempt the message goes to its dead-letter queue.
    """

    def __init__(
        self,
        reason: str,
        *,
        delay_s: float | None = None,
        nothing_done: bool = False,
        note: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s
        """Overrides the queue's backoff for this retry (e.g. WeChat asked for a pause)."""
        self.nothing_done = nothing_done
        """This delivery left nothing behind that the next one must know of (it changed
        nothing outside the store, or undid what it changed): the retried copy stays
        :attr:`~libs.common.bus.Delivery.fresh` if this one was."""
        self.note = note
        """Handed to the next attempt as :attr:`~libs.common.bus.Delivery.note` (e.g. which
        claim in the store this attempt may have left behind)."""


class Reject(Exception):
    """Permanent failure: straight to the dead-letter queue, never retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BusError(Exception):
    """The broker could not be used (connection down, closed bus)."""


class PublishError(BusError):
    """A publish was not confirmed: nacked, returned as unroutable, or timed out."""


class Unroutable(PublishError):
    """No queue is bound to the message's routing key: nobody would ever receive it."""
