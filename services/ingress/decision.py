"""Publish a push's event, confirmed, and for a user message wait for the router's decision.

The decision is an RPC because WeChat accepts ``transfer_customer_service`` only as the answer
to the push itself: the event goes out with a reply address and ingress waits up to the budget.
A late, missing or unreadable decision answers ``success``; the event is published either way.
"""

from __future__ import annotations

import time

import msgspec
import structlog

from libs.common.bus import Bus
from libs.common.schemas import InboundEvent, UserMessage, decode_reply
from services.ingress import metrics
from services.ingress.dedupe import Done

log = structlog.get_logger(__name__)


async def publish(
    bus: Bus, event: InboundEvent, *, budget_s: float, confirm_s: float, repeat: bool = False
) -> Done:
    """Publish ``event`` (a possible repeat if ``repeat``); raises the bus's errors when the
    broker did not confirm it within ``confirm_s``."""
    if not isinstance(event, UserMessage):
        # Events are never transferred, so nothing is worth waiting for.
        await bus.publish(event, repeat=repeat, confirm_within_s=confirm_s)
        return Done(transfer=False)
    started = time.perf_counter()
    body = await bus.request(event, timeout=budget_s, repeat=repeat, confirm_within_s=confirm_s)
    metrics.DECISION_WAIT.observe(time.perf_counter() - started)
    if body is None:
        metrics.DECISIONS.labels("timeout").inc()
        log.info("decision.timeout", budget_ms=round(budget_s * 1000))
        return Done(transfer=False, decided=False)
    try:
        reply = decode_reply(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        metrics.DECISIONS.labels("invalid").inc()
        log.warning("decision.unreadable", size=len(body))
        return Done(transfer=False, decided=False)
    if reply.event_id != event.id:
        metrics.DECISIONS.labels("invalid").inc()
        log.warning("decision.other_event", event_id=reply.event_id)
        return Done(transfer=False, decided=False)
    metrics.DECISIONS.labels("transfer" if reply.transfer else "no_transfer").inc()
    return Done(transfer=reply.transfer)
