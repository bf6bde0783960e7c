"""One inbound event: the decision (answered first), then everything the decision does.

For each event the router reads two keys at once, the user's session and the plan already
made for this event id (a redelivery), decides from the rules in memory and answers the
decision RPC, all before any other work. Then it stores the plan under the event id, and
carries it out: the ``decision.<action>`` fact, the session change, the send commands (one
after the other, in order), the extension topics; last it marks the plan done.

A redelivered event whose plan is done is answered again (from the plan) and nothing else
happens; one whose plan is unfinished has the same plan carried out again: the same fact
and command ids, published as possible repeats, which the sender deduplicates. A failure of
the store or the bus becomes a :class:`Retry`, so the bus delivers the event again later.

When the store has lost its memory (see ``libs.common.store.forgotten``) a missing plan proves
nothing for an event older than the loss that may have been handled before (its delivery is
not fresh): its plan is carried out as possible repeats, so the sender, which cannot trust
its own ledger for it either, reports its commands instead of sending them twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import structlog

from libs.common.bus import Bus, BusError, Delivery, PublishError, Reject, Retry, publish_fact
from libs.common.observability.logging import hash_openid
from libs.common.schemas import (
    AnyMessage,
    DecisionReply,
    Inbound,
    InboundEvent,
    UserMessage,
    now_ms,
)
from libs.common.store import Store, StoreError, Write, forgotten
from libs.common.topology import extension_key
from services.router import metrics, plans, sessions
from services.router.plans import Plan
from services.router.rules import Rules
from services.router.sessions import Session

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Router:
    """What the handler needs, built once by the app."""

    bus: Bus
    store: Store
    rules: Rules
    budget_ms: int
    """How long ingress waits for an answer: a decision after that is late."""
    session_ttl_s: float
    plan_ttl_s: float
    clock_ms: Callable[[], int] = now_ms


def event_time(event: InboundEvent) -> float:
    """The time the rules read: when the user acted (CreateTime), not when we got to it."""
    return float(event.create_time) if event.create_time > 0 else event.time_ms / 1000


async def handle_event(router: Router, msg: AnyMessage, delivery: Delivery) -> None:
    started = time.perf_counter()
    if not isinstance(msg, Inbound):
        raise Reject(f"{msg.routing_key()} is not an inbound event")
    event: InboundEvent = msg
    structlog.contextvars.bind_contextvars(openid=hash_openid(event.openid))
    ruleset = router.rules.current
    try:
        raw_session, raw_plan = await asyncio.gather(
            router.store.get(sessions.key(event.openid)), router.store.get(plans.key(event.id))
        )
    except StoreError as exc:
        # Answer from the rules alone so the requester does not wait in vain; do the rest
        # when the store is back.
        decision = ruleset.decide(event, sessions.EMPTY, ts=event_time(event))
        await _answer(event, delivery, transfer=decision.transfer, rule=decision.rule)
        raise Retry(f"store unavailable: {exc}", nothing_done=True) from exc

    previous = _stored_plan(raw_plan)
    if previous is not None:
        await _answer(event, delivery, transfer=previous.transfer, rule=previous.rule)
        if previous.done:
            metrics.REDELIVERED.labels("done").inc()
            log.info("decision.duplicate", rule=previous.rule)
            return
        metrics.REDELIVERED.labels("resumed").inc()
        log.info("decision.resumed", rule=previous.rule)
        await _carry_out(router, event, previous, session=None, repeat=True)
        return

    session = sessions.decode(raw_session)
    decision = ruleset.decide(event, session, ts=event_time(event))
    await _answer(event, delivery, transfer=decision.transfer, rule=decision.rule)
    elapsed = time.perf_counter() - started
    late = _late(router, event, delivery)
    metrics.DECISION_SECONDS.observe(elapsed)
    metrics.DECISIONS.labels(decision.rule, decision.action).inc()
    if late:
        metrics.LATE.inc()
    # One per event: counted in metrics (by rule and action), a line only at debug.
    log.debug(
        "decision.made",
        rule=decision.rule,
        action=decision.action,
        transfer=decision.transfer,
        late=late,
        latency_us=round(elapsed * 1e6),
    )
    plan = plans.plan(decision, event, late=late, latency_us=round(elapsed * 1e6))
    fresh: Session | None = session
    try:
        claim = await router.store.claim(
            Write(key=plans.key(event.id), value=plans.encode(plan), ttl_s=router.plan_ttl_s)
        )
    except StoreError as exc:
        raise Retry(f"store unavailable: {exc}", nothing_done=True) from exc
    repeat = False
    if not claim.ok:
        # Another delivery of this event stored its plan first: carry out that one.
        plan = _stored_plan(claim.known) or plan
        if plan.done:
            return
        fresh, repeat = None, True
    elif not delivery.fresh and forgotten(claim, event_time(event)):
        metrics.REDELIVERED.labels("forgotten").inc()
        log.warning("decision.plan_forgotten", rule=plan.rule)
        repeat = True
    await _carry_out(router, event, plan, session=fresh, repeat=repeat)


def _stored_plan(raw: bytes | None) -> Plan | None:
    if raw is None:
        return None
    try:
        return plans.decode(raw)
    except msgspec.DecodeError:
        # Not ours to read (another version, or damage): deciding again is the safe side.
        log.warning("decision.unreadable_plan", size=len(raw))
        return None


WECHAT_DEADLINE_MS = 5000
"""WeChat stops waiting for a push's answer after 5 s; so does ingress, before it."""


async def _answer(
    event: InboundEvent, delivery: Delivery, *, transfer: bool, rule: str, now_ms: int | None = None
) -> None:
    """The RPC answer, when the delivery asked for one (ingress asks only for user messages)
    and someone can still be waiting: a reply address outlives its requester, and one on a
    broker node that is gone costs the connection that answers it."""
    if not delivery.reply_to:
        return
    age_ms = (now_ms if now_ms is not None else time.time_ns() // 1_000_000) - event.time_ms
    if age_ms > WECHAT_DEADLINE_MS:
        metrics.ANSWERS_SKIPPED.inc()
        return
    reply = DecisionReply(
        event_id=event.id, transfer=transfer and isinstance(event, UserMessage), rule=rule
    )
    try:
        await delivery.reply(reply)
    except BusError as exc:
        # The requester falls back to "success" when its budget ends; the work goes on.
        metrics.ANSWER_FAILURES.inc()
        log.warning("decision.answer_failed", error=str(exc))


def _late(router: Router, event: InboundEvent, delivery: Delivery) -> bool:
    """Whether the requester had stopped waiting (only a delivery that asked is waited on).

    The requester's wait starts after its confirmed publish, a little after the event's own
    time, so this errs towards "late" by that publish's duration.
    """
    if not delivery.reply_to:
        return False
    return router.clock_ms() - event.time_ms > router.budget_ms


async def _carry_out(
    router: Router, event: InboundEvent, plan: Plan, *, session: Session | None, repeat: bool
) -> None:
    """Carry out the plan, then mark it done. ``session``: the session as read, if fresh;
    ``repeat``: the plan may have been carried out (in part) before.

    The fact, the session change, the commands and the extensions do not wait on each other;
    the commands go out one after the other, so the sender receives them in their order.
    """
    steps = [_record(router, plan, repeat), _session(router, event, plan, session)]
    steps.append(_commands(router.bus, plan, repeat))
    steps.extend(_publish_extension(router.bus, event, topic, repeat) for topic in plan.extensions)
    failures = [
        r for r in await asyncio.gather(*steps, return_exceptions=True) if isinstance(r, Exception)
    ]
    if failures:
        failure = failures[0]
        if isinstance(failure, StoreError | PublishError):
            raise Retry(f"{type(failure).__name__}: {failure}") from failure
        raise failure
    try:
        await router.store.set(
            plans.key(event.id), plans.encode(plan.finished()), ttl_s=router.plan_ttl_s
        )
    except StoreError as exc:
        # Everything was published: a redelivery would only publish it again. Should this
        # event come again, its unfinished plan is carried out again as possible repeats.
        metrics.PLAN_NOT_FINISHED.inc()
        log.warning("decision.done_not_recorded", error=str(exc))


async def _record(router: Router, plan: Plan, repeat: bool) -> None:
    if plan.fact is not None:
        heard = await publish_fact(router.bus, plan.fact, repeat=repeat)
        metrics.DECISION_FACTS.labels("published" if heard else "unroutable").inc()


async def _session(
    router: Router, event: InboundEvent, plan: Plan, session: Session | None
) -> None:
    if plan.change is None:
        return
    store = router.store
    before = session if session is not None else await sessions.load(store, event.openid)
    after = plan.change.apply(before)
    if after != before:
        await sessions.save(store, event.openid, after, ttl_s=router.session_ttl_s)


async def _commands(bus: Bus, plan: Plan, repeat: bool) -> None:
    for command in plan.commands:
        await bus.publish(command, repeat=repeat)
        metrics.COMMANDS.labels(command.msgtype).inc()


async def _publish_extension(bus: Bus, event: InboundEvent, topic: str, repeat: bool) -> None:
    heard = await publish_fact(bus, event, routing_key=extension_key(topic), repeat=repeat)
    metrics.EXTENSION_PUBLISHES.labels(topic, "ok" if heard else "unroutable").inc()
    if not heard:
        log.warning("extension.unroutable", topic=topic)
