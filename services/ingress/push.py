"""``POST`` on the push path: verify, open, publish exactly once, answer within WeChat's 5 s.

The order matters: nothing is published before the push proved it comes from WeChat (the
protocol core checks size, signature, age, ciphertext and message in that order), and
nothing is answered ``success`` before the broker confirmed its event. Every refusal is
counted by reason and logged without content; every failure to publish is a 503, which
makes WeChat send the push again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import structlog
from aiohttp import web

from libs.common import edge
from libs.common.bus import BusError
from libs.common.inbound import to_event
from libs.common.keys import BUS, STORE
from libs.common.observability.logging import hash_openid
from libs.common.schemas import InboundEvent, UserMessage
from libs.common.store import StoreError
from libs.common.wechat.errors import WeChatError
from libs.common.wechat.push import open_push, single_query
from services.ingress import answer, decision, dedupe, metrics, spool
from services.ingress.errors import (
    BodyTooLarge,
    IngressError,
    Overdue,
    ReadTimeout,
    ReplayedSignature,
    Unavailable,
    Unconfirmed,
    UnsupportedContentType,
)
from services.ingress.keys import GATE, PUSH, RECORDER, RELAY, SETTINGS

log = structlog.get_logger(__name__)

ANSWER_BOUND_S = 4.5
"""The latest a push is answered, from its arrival: WeChat stops waiting at 5 s, and an answer
it never reads is worse than a 503 it retries."""

# WeChat does not document the Content-Type of its pushes; these are what XML or JSON can
# come as (aiohttp reports a missing header as application/octet-stream). The format itself
# is read from the body.
PUSH_CONTENT_TYPES = frozenset(
    {
        "text/xml",
        "application/xml",
        "application/json",
        "text/json",
        "text/plain",
        "application/octet-stream",
    }
)


async def handle(request: web.Request) -> web.Response:
    # The body is read before the push takes an in-flight place, within the read timeout: a
    # client that trickles its body holds a connection for that long, never a place.
    arrived = edge.reading_since(request)
    app = request.app
    try:
        body = await _receive(
            request, app[PUSH].max_body_bytes, arrived + app[SETTINGS].read_timeout_s
        )
    except IngressError as exc:
        return _refused(exc, time.perf_counter())
    gate = app[GATE]
    if not gate.enter():
        metrics.SHED.inc()
        # Counted; a warning per push shed would feed the overload it reports.
        log.debug("push.shed", in_flight=gate.in_flight)
        return web.Response(status=503, text="overloaded")
    try:
        return await _handle(request, body, arrived)
    finally:
        gate.leave()


async def _handle(request: web.Request, body: bytes, arrived: float) -> web.Response:
    """``arrived``: the loop's time when the request's handling began (its body unread)."""
    started = time.perf_counter()
    app = request.app
    config = app[PUSH]
    try:
        query = single_query(request.query.items())
        opened = open_push(query, body, config=config, now=time.time())
        if not opened.encrypted:
            await _bind_signature(app, query["signature"], body)
    except (WeChatError, ReplayedSignature) as exc:
        return _refused(exc, started)

    event = to_event(opened.message, appid=config.appid)
    structlog.contextvars.bind_contextvars(
        correlation_id=event.correlation_id, openid=hash_openid(event.openid)
    )
    kind = _kind(event)
    settings = app[SETTINGS]
    bus, store = app[BUS], app[STORE]
    budget_s = settings.decision_budget_ms / 1000
    confirm_s = settings.publish_confirm_ms / 1000

    async def publish(repeat: bool) -> dedupe.Done:
        # The decision waits only as long as the answer's bound leaves after the confirm: a
        # published push is answered `success` without its decision, never 503.
        left = arrived + ANSWER_BOUND_S - asyncio.get_running_loop().time() - confirm_s
        return await decision.publish(
            bus,
            event,
            budget_s=max(0.0, min(budget_s, left)),
            confirm_s=confirm_s,
            repeat=repeat,
        )

    async def keep(repeat: bool) -> bool:
        kept = await spool.keep(store, event, repeat=repeat, limit=settings.spool_limit)
        app[RELAY].wake.set()
        return kept

    try:
        try:
            # Each step has its own bound, but a slow store and a slow broker add up: past
            # this one the answer would come after WeChat stopped waiting. A step cut short
            # leaves at most a pending claim (it expires) or a copy of the event (consumers
            # drop it by its id); WeChat's next attempt finds either.
            async with asyncio.timeout_at(arrived + ANSWER_BOUND_S):
                settled = await dedupe.settle(
                    store,
                    dedupe.Push(
                        key=dedupe.key_for(event.id),
                        born=float(event.create_time),
                        arrived=event.time_ms / 1000,
                    ),
                    publish,
                    keep if settings.spool_limit else None,
                    pending_ttl_s=settings.dedupe_pending_ttl_s,
                    done_ttl_s=settings.dedupe_ttl_s,
                    wait_s=budget_s + settings.dedupe_wait_margin_ms / 1000,
                    recorder=app[RECORDER],
                )
        except BusError as exc:
            metrics.PUBLISH_FAILURES.inc()
            raise Unconfirmed(str(exc)) from exc
        except TimeoutError:
            raise Overdue(f"not kept within {ANSWER_BOUND_S:g}s of its arrival") from None
    except Unavailable as exc:
        metrics.PUSHES.labels(kind, exc.code).inc()
        log.warning("push.unavailable", type=kind, reason=exc.code, error=str(exc))
        response = web.Response(status=exc.http_status, text=exc.code)
        return _answered(response, "unavailable", started)

    metrics.PUSHES.labels(kind, settled.path).inc()
    outcome = settled.path
    if settled.answer.spooled:
        if settled.first:
            log.info("push.spooled", type=event.routing_key())
        return _answered(answer.success(), "spooled", started)
    if settled.answer.transfer and isinstance(event, UserMessage):
        log.debug("push.transferred", type=event.routing_key(), outcome=outcome)
        return _answered(answer.transfer(opened, config), "transfer", started)
    # One line per push at info costs more than the rest of the handler; the metrics count
    # every push, and at debug the router logs each decision under the same correlation id.
    log.debug("push.accepted", type=event.routing_key(), outcome=outcome)
    return _answered(answer.success(), "success", started)


async def _bind_signature(app: web.Application, signature: str, body: bytes) -> None:
    """A plain-mode signature covers the token, timestamp and nonce, not the body: the first
    body seen with it is remembered for the replay window, and another one refused.

    WeChat's own retries send the same body again and pass. Without the store the check is
    skipped (logged): a push is still answered, as the dedupe does then too.
    """
    settings = app[SETTINGS]
    key = f"ingress:signature:{signature}"
    digest = hashlib.sha256(body).digest()
    ttl_s = float(settings.max_push_age_s or settings.dedupe_ttl_s)
    store = app[STORE]
    try:
        if await store.set_if_absent(key, digest, ttl_s=ttl_s):
            return
        seen = await store.get(key)
    except StoreError as exc:
        log.warning("push.signature_unchecked", error=str(exc))
        return
    if seen is not None and seen != digest:
        raise ReplayedSignature("this signature came before with another body")


def _refused(exc: WeChatError | IngressError, started: float) -> web.Response:
    metrics.BAD_INPUT.labels(reason=exc.code).inc()
    log.warning("push.refused", reason=exc.code, status=exc.http_status)
    response = web.Response(status=exc.http_status, text=exc.code)
    if isinstance(exc, ReadTimeout):
        response.force_close()
    return _answered(response, "refused", started)


async def _receive(request: web.Request, limit: int, deadline: float) -> bytes:
    """The body of a push: its content type checked, at most ``limit`` bytes, by the loop's
    time ``deadline`` (:class:`ReadTimeout` past it)."""
    if request.content_type not in PUSH_CONTENT_TYPES:
        raise UnsupportedContentType(request.content_type[:64])
    try:
        async with asyncio.timeout_at(deadline):
            return await _read_capped(request, limit)
    except TimeoutError:
        raise ReadTimeout("the request was not read within WXKF_READ_TIMEOUT_S") from None


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """The body, or :class:`BodyTooLarge` as soon as it is known to exceed ``limit``."""
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(f"Content-Length {length} is more than {limit}")
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"more than {limit} bytes")
    return bytes(body)


def _kind(event: InboundEvent) -> str:
    """The schema tag (``msg.other`` for every unknown type): a bounded metrics label."""
    tag = event.__struct_config__.tag
    return tag if isinstance(tag, str) else "unknown"


def _answered(response: web.Response, answer: str, started: float) -> web.Response:
    metrics.ANSWER_LATENCY.labels(answer=answer).observe(time.perf_counter() - started)
    return response
