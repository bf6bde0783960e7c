"""The sender's bus handlers, one per kind of message: a message to send and a typing
indicator (the commands queue); a user message and entering the chat, which open reply
windows (the windows queue). They are the shell: they read the state, ask ``decide.py`` what
to do, and carry that out.

A command goes through, in order: the order of its cause, its body (assets resolved), one
atomic claim in the store of its ledger mark (a redelivery finds its outcome there,
re-publishes it and sends nothing), a slot of the reply window and a token of the shared
rate limit, then the call, and one store call recording its outcome. Every command ends in
exactly one fact on ``kf.events``: ``outbound.sent.*``, ``outbound.rejected.*`` or
``outbound.failed.*``.

Transient failures go back to the bus (``Retry``: delay queues with capped backoff); on the
last attempt the command is reported failed and dead-lettered (``Reject``), from where
``wxkf dlq replay`` can send it again. Nothing here sleeps to retry; the one wait is the
rate limit's pace, bounded by ``max_pace_wait_s``.

Ambiguous failures (WeChat may have delivered; its send API has no idempotency key) follow
``ambiguous_retry``: types listed there are sent again (maybe twice), the others are reported
failed with an ``errmsg`` starting ``ambiguous:`` (maybe lost, never twice). A command the
ledger may have forgotten is one of them: the store lost its memory (``forgotten``) after the
command was made, and this copy may repeat one handled before (its delivery is not fresh).

Every retry this module asks for says whether its delivery left anything done that the next
must know of (``Retry(nothing_done=...)``), and carries the owner of the ledger mark it may
have left behind (``note``): a claim whose answer was lost with the store's connection, or
a mark the store could not clear. The next attempt takes that mark over instead of waiting
for it to age into an ambiguous failure.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import msgspec
import structlog

from libs.common.bus import Bus, Delivery, Handler, Reject, Retry, by_kind, on, publish_fact
from libs.common.media_client import MediaClient, MediaServiceError
from libs.common.observability.logging import hash_openid
from libs.common.observability.metrics import Timer
from libs.common.schemas import (
    USER_MESSAGE_TYPES,
    Failed,
    Inbound,
    Outcome,
    Rejected,
    RejectReason,
    SendCommand,
    SendImage,
    SendLink,
    SendMiniProgramPage,
    SendText,
    SendTyping,
    Sent,
    SessionEntered,
    UserMessage,
    decode,
    derived_id,
    encode,
    new_id,
    now_ms,
)
from libs.common.store import Claim, RateLimit, Store, StoreError, Write
from libs.common.topology import QueueSpec
from libs.common.wechat.api import ApiClient, CustomMessage
from libs.common.wechat.apierrors import WeChatApiError
from libs.common.wechat.token import AccessToken
from services.sender import compose, decide, ledger, metrics, order, typing_rules, windows
from services.sender.errors import NotSendable
from services.sender.settings import SenderSettings
from services.sender.window_rules import Grant, GrantKind, WindowTake

log = structlog.get_logger(__name__)

Clock = Callable[[], float]

_AFTER_PREDECESSOR_S = 0.01


def _busy_for(settings: SenderSettings) -> float:
    """How long one command can be in WeChat's hands: a call, a refused token, a second call."""
    return 2 * settings.wechat_timeout_s + 1.0


"""A waiting command comes back this long after its predecessor's next try is due."""


class Sender(msgspec.Struct, frozen=True, kw_only=True):
    """What the handlers use; built once per app (see ``app.py``)."""

    settings: SenderSettings
    bus: Bus
    store: Store
    api: ApiClient
    token: AccessToken
    media: MediaClient | None
    commands: QueueSpec
    """The commands queue as consumed (its retry delays)."""
    clock: Clock
    """WeChat's time: reply windows and typing (the simulator's clock in tests)."""
    wall: Clock = time.time
    """Real time: rate limit, ledger ages, how old a command is."""
    steps: order.InFlight = msgspec.field(default_factory=order.InFlight)
    """Commands with a successor being handled in this process right now."""
    recording: set[asyncio.Task[None]] = msgspec.field(default_factory=set)
    """Outcomes of calls that WeChat took, being written to a store that failed to take them
    at once (the app waits for them before it closes the store)."""


_MARKED: contextvars.ContextVar[str | None] = contextvars.ContextVar("ledger_owner", default=None)
"""The owner of the ledger mark this delivery asked the store to write (each delivery runs in
a task of its own); its retries leave it as their note."""


def born(cmd: SendCommand) -> float:
    """When the command, or the event it answers, was made (unix seconds): the earlier."""
    made = cmd.time_ms / 1000
    return min(made, float(cmd.opened_at)) if cmd.opened_at > 0 else made


# --- the consumers' handlers: one per kind of message -------------------------------------------

Message = SendText | SendImage | SendLink | SendMiniProgramPage
"""A command whose call sends a message to the user (every kind but typing)."""


def commands(sender: Sender) -> Handler:
    """The commands queue's handler: a message, or a typing indicator."""

    async def message(cmd: Message, delivery: Delivery) -> None:
        await _command(sender, cmd, delivery, _message)

    async def typing(cmd: SendTyping, delivery: Delivery) -> None:
        await _command(sender, cmd, delivery, _typing)

    return by_kind(
        on(SendText, message),
        on(SendImage, message),
        on(SendLink, message),
        on(SendMiniProgramPage, message),
        on(SendTyping, typing),
    )


def window_events(sender: Sender) -> Handler:
    """The windows queue's handler: the inbound events that open reply windows."""

    async def user_message(event: UserMessage, delivery: Delivery) -> None:
        await handle_user_message(sender, event, delivery)

    async def entered(event: SessionEntered, delivery: Delivery) -> None:
        await handle_session_entered(sender, event, delivery)

    return by_kind(
        *(on(kind, user_message) for kind in USER_MESSAGE_TYPES),
        on(SessionEntered, entered),
    )


# --- inbound events: reply windows -------------------------------------------------------------


async def handle_user_message(sender: Sender, event: UserMessage, delivery: Delivery) -> None:
    """A user message opens (or renews) a message window, and is the user's turn for typing."""
    grant = windows.message_grant(event, sender.settings)
    if not await _open_window(sender, event, grant):
        return
    at = float(event.create_time)
    await typing_rules.user_wrote(sender.store, event.appid, event.openid, at=at)
    _granted(event, grant)


async def handle_session_entered(sender: Sender, event: SessionEntered, delivery: Delivery) -> None:
    """Entering the chat opens (or renews) an enter window."""
    grant = windows.enter_grant(event, sender.settings)
    if await _open_window(sender, event, grant):
        _granted(event, grant)


async def _open_window(sender: Sender, event: Inbound, grant: Grant) -> bool:
    """Open the grant for the event's user; False (nothing opened) for another app's event."""
    if event.appid != sender.settings.appid:
        log.warning("window.other_app", appid=event.appid)
        return False
    key = windows.window_key(event.appid, event.openid)
    await windows.grant(sender.store, key, grant, now=sender.clock())
    return True


def _granted(event: Inbound, grant: Grant) -> None:
    metrics.WINDOW_GRANTS.labels(grant.kind).inc()
    # One per user message: counted in metrics, a line only at debug.
    log.debug(
        "window.granted", kind=grant.kind, count=grant.count, openid=hash_openid(event.openid)
    )


# --- commands ----------------------------------------------------------------------------------

C = TypeVar("C", bound=SendCommand)


async def _command(
    sender: Sender,
    cmd: C,
    delivery: Delivery,
    work: Callable[[Sender, C, Delivery], Awaitable[None]],
) -> None:
    """What every command goes through around its own ``work``: its log context, its timer,
    its app and its order; a store that fails on the way hands it back to the bus."""
    structlog.contextvars.bind_contextvars(
        command_id=cmd.id, msgtype=cmd.msgtype, openid=hash_openid(cmd.openid)
    )
    with Timer(metrics.COMMAND_SECONDS.labels(cmd.msgtype).observe), sender.steps.running(cmd):
        try:
            if await _ready(sender, cmd, delivery):
                await work(sender, cmd, delivery)
        except StoreError as exc:
            await _retry_or_fail(sender, cmd, delivery, decide.Later(why="store", errmsg=str(exc)))


async def _ready(sender: Sender, cmd: SendCommand, delivery: Delivery) -> bool:
    """Whether the command goes on now: it is this app's (else it is reported failed), and
    its predecessor settled (else it comes back later) or never will."""
    # No ledger read up front: the claim right before the call is the duplicate check (it
    # takes nothing when the command is known), and every outcome reached without a call is
    # recorded only if none is yet.
    settings, store = sender.settings, sender.store
    if cmd.appid != settings.appid:
        await _settle(sender, cmd, delivery, _failed(cmd, delivery, f"command for app {cmd.appid}"))
        return False
    if not order.ordered(cmd):
        return True
    # A wait for a send in progress here, bounded like the busy mark other replicas read.
    await sender.steps.predecessor(cmd, timeout_s=_busy_for(settings))
    waiting, retry_at = await order.waiting_for(store, cmd)
    if not waiting:
        return True
    now = sender.wall()
    pending = decide.predecessor_pending(
        final=delivery.final,
        now=now,
        backoff_s=sender.commands.retry_delay(delivery.attempt),
        retry_at=retry_at,
        after_s=_AFTER_PREDECESSOR_S,
    )
    if isinstance(pending, decide.Wait):
        delay = pending.delay_s
        await order.mark_retrying(store, cmd, at=now + delay, ttl_s=settings.ledger_ttl_s)
        metrics.RETRIES.labels("order").inc()
        raise Retry(f"waiting for seq {cmd.seq - 1} of its cause", delay_s=delay, nothing_done=True)
    metrics.ORDER_GAVE_UP.inc()
    log.warning("send.order_gave_up", cause_id=cmd.cause_id, seq=cmd.seq)
    return True


async def _message(sender: Sender, cmd: Message, delivery: Delivery) -> None:
    try:
        composed = await compose.compose(cmd, sender.media)
    except NotSendable as exc:
        await _unclaimed(sender, cmd, delivery, decide.Fail(errmsg=exc.reason))
        return
    except MediaServiceError as exc:
        await _unclaimed(sender, cmd, delivery, decide.media_failed(exc))
        return
    claim = await _claim(sender, cmd, delivery, spends_slot=True)
    if claim is None:
        return
    slot = claim.step.kind if claim.step is not None else None

    async def call() -> float:
        try:
            return await _call_send(sender, composed.message)
        except WeChatApiError as exc:
            if exc.kind != "media" or not composed.asset:
                raise
        # An expired media_id (3 days): ask the media service for a fresh one, once.
        fresh = await compose.compose(cmd, sender.media, refused=composed.media_id)
        log.info("send.media_re_resolved")
        return await _call_send(sender, fresh.message)

    latency = await _deliver(sender, cmd, delivery, slot, call)
    if latency is not None:
        # Written with the outcome, in the same store call.
        chat = [typing_rules.delivered(cmd.appid, cmd.openid, at=sender.clock())]
        await _record_sent(sender, cmd, delivery, latency, also=chat)


async def _typing(sender: Sender, cmd: SendTyping, delivery: Delivery) -> None:
    settings, store = sender.settings, sender.store
    if cmd.command == "Typing":
        why = await typing_rules.refusal(
            store, cmd.appid, cmd.openid, now=sender.clock(), exchange_s=settings.typing_exchange_s
        )
        if why is None:
            opened = windows.grant_opened_by(cmd, settings)
            if opened is not None:  # as in _claim: the event's window, before its own copy
                key = windows.window_key(cmd.appid, cmd.openid)
                await windows.grant(store, key, opened, now=sender.clock())
            why = await _window_has_room(sender, cmd)
        if why is not None:
            log.info("send.typing_refused", why=why)
            await _refused_by_window(sender, cmd, delivery, "typing_not_allowed", detail=why)
            return
    if await _claim(sender, cmd, delivery, spends_slot=False) is None:
        return

    async def call() -> float:
        return await sender.token.call(
            lambda token: sender.api.typing(token, cmd.openid, cmd.command)
        )

    latency = await _deliver(sender, cmd, delivery, None, call)
    if latency is not None:
        until = sender.clock() + settings.typing_duration_s if cmd.command == "Typing" else None
        shown = typing_rules.typing(store, cmd.appid, cmd.openid, until=until)
        await _record_sent(sender, cmd, delivery, latency, first=shown)


async def _call_send(sender: Sender, message: CustomMessage) -> float:
    return await sender.token.call(lambda token: sender.api.send(token, message))


async def _window_has_room(sender: Sender, cmd: SendCommand) -> str | None:
    """Typing needs a window with room but spends none of it (nor holds one for a moment: a
    concurrent send may need the last slot)."""
    key = windows.window_key(cmd.appid, cmd.openid)
    room = await windows.room(sender.store, key, now=sender.clock())
    return None if room.ok else f"reply window: {room.reason}"


# --- the call ----------------------------------------------------------------------------------


async def _deliver(
    sender: Sender,
    cmd: SendCommand,
    delivery: Delivery,
    slot: GrantKind | None,
    call: Callable[[], Awaitable[float]],
) -> float | None:
    """Call WeChat under this delivery's ledger mark (see :func:`_claim`): the call's latency
    once WeChat took it (the caller records it), or None when it ended otherwise and that
    was carried out here. ``slot``: the window slot the call spends (None for typing)."""
    try:
        return await call()
    except decide.CALL_ERRORS as exc:
        pause = sender.settings.rate_limited_pause()
        ended = decide.call_failed(exc, typing=isinstance(cmd, SendTyping), rate_pause_s=pause)
    if isinstance(ended, decide.Refuse):
        if ended.close is not None:
            # WeChat's view wins: correct ours so the next command is refused without a call.
            key = windows.window_key(cmd.appid, cmd.openid)
            await windows.close(sender.store, key, now=sender.clock(), reason=ended.close)
            metrics.QUOTA.labels(f"corrected_{ended.close}").inc()
            log.warning("send.window_corrected", errcode=ended.errcode, reason=ended.close)
        rejected = _rejected(cmd, delivery, ended.reason, ended.errcode)
        await _settle(sender, cmd, delivery, rejected, owned=True)
    elif isinstance(ended, decide.Fail):
        if ended.release:
            await _release(sender, cmd, slot)
        await _settle(sender, cmd, delivery, _failed_as(cmd, delivery, ended), owned=True)
    elif isinstance(ended, decide.Undelivered):
        await _not_delivered(sender, cmd, slot)
        await _unclaimed(sender, cmd, delivery, ended.then)
    else:
        await _ambiguous(sender, cmd, delivery, ended.reason)
    return None


async def _record_sent(
    sender: Sender,
    cmd: SendCommand,
    delivery: Delivery,
    latency_s: float,
    *,
    first: Awaitable[None] | None = None,
    also: list[Write] | None = None,
) -> None:
    """Settle a command WeChat took: ``first`` a store step of its own, then the outcome with
    the ``also`` writes."""
    fact = _sent(cmd, delivery, latency_s)
    try:
        if first is not None:
            await first
        await _settle(sender, cmd, delivery, fact, owned=True, also=also)
    except StoreError as exc:
        # WeChat took it: the command is done whatever the store says now. Sending it again
        # is the one thing that must not happen, so it is reported and acked, and its
        # outcome is written once the store takes it.
        await _sent_unrecorded(sender, cmd, fact, exc)


async def _known(sender: Sender, cmd: SendCommand, delivery: Delivery, entry: ledger.Entry) -> None:
    """What to do with a command the ledger already knows (a redelivery or a duplicate)."""
    decision = decide.known(
        entry, now=sender.wall(), stale_after_s=sender.settings.inflight_stale_s
    )
    if isinstance(decision, decide.Republish):
        # Settled before (the ack or a publish was lost): say it again, send nothing.
        metrics.COMMANDS.labels(cmd.msgtype, "duplicate").inc()
        await order.mark_done(sender.store, cmd, ttl_s=sender.settings.ledger_ttl_s)
        await publish_fact(sender.bus, decode(bytes(entry.fact)))
        log.info("send.duplicate")
        return
    if isinstance(decision, decide.ComeBack):
        metrics.RETRIES.labels("inflight").inc()
        # Not nothing done: this copy has met another one of the same command.
        raise Retry("another delivery is calling WeChat", delay_s=decision.delay_s)
    await _ambiguous(sender, cmd, delivery, decision.reason)


# --- outcomes ----------------------------------------------------------------------------------


async def _refused_by_window(
    sender: Sender, cmd: SendCommand, delivery: Delivery, reason: RejectReason, *, detail: str
) -> None:
    # See decide.window_racing; a command naming its window opened it already (see _claim).
    age_s = (now_ms() - cmd.time_ms) / 1000
    grace_s = sender.settings.window_grace_s
    racing = decide.window_racing(
        age_s=age_s, opens=cmd.opens, grace_s=grace_s, final=delivery.final
    )
    if racing == "look_again":
        metrics.RETRIES.labels("window_grace").inc()
        raise Retry(
            f"refused by the window ({detail}); the window may be opening",
            nothing_done=True,
            note=_MARKED.get(),
        )
    await _settle(sender, cmd, delivery, _rejected(cmd, delivery, reason, None))


async def _ambiguous(sender: Sender, cmd: SendCommand, delivery: Delivery, reason: str) -> None:
    """WeChat may have delivered: the slot stays spent, and the policy decides the rest.
    Called while this delivery holds the command's ledger mark."""
    then = decide.ambiguous(reason, retried=cmd.msgtype in sender.settings.ambiguous_retried)
    if isinstance(then, decide.Forget):
        metrics.AMBIGUOUS.labels(cmd.msgtype, "retry").inc()
        await ledger.clear(sender.store, cmd.id)
        await _retry_or_fail(sender, cmd, delivery, then.then)
    metrics.AMBIGUOUS.labels(cmd.msgtype, "give_up").inc()
    await _settle(sender, cmd, delivery, _failed_as(cmd, delivery, then), owned=True)


async def _unclaimed(
    sender: Sender, cmd: SendCommand, delivery: Delivery, end: decide.Later | decide.Fail
) -> None:
    """End a delivery that holds no ledger mark (none taken, or given up): a failure is
    recorded only if nothing is known of the command yet."""
    if isinstance(end, decide.Later):
        await _retry_or_fail(sender, cmd, delivery, end)
    await _settle(sender, cmd, delivery, _failed_as(cmd, delivery, end))


async def _retry_or_fail(
    sender: Sender, cmd: SendCommand, delivery: Delivery, later: decide.Later
) -> NoReturn:
    """Hand the command back to the bus; on its last attempt report it failed and dead-letter
    it (replayable). The caller has given up any ledger mark (one it could not clear is left
    to the next attempt, by the note)."""
    settings = sender.settings
    why, errmsg, errcode = later.why, later.errmsg, later.errcode
    if delivery.final:
        fact = _failed(cmd, delivery, f"attempts exhausted: {errmsg}", errcode)
        # A failed predecessor counts as done: the rest of its cause goes on.
        await _best_effort(order.mark_done(sender.store, cmd, ttl_s=settings.ledger_ttl_s))
        await publish_fact(sender.bus, fact)
        metrics.COMMANDS.labels(cmd.msgtype, "failed").inc()
        metrics.DEAD_LETTERS.labels(cmd.msgtype).inc()
        log.error("send.dead_lettered", why=why, errcode=errcode, attempts=delivery.attempt)
        raise Reject(f"attempts exhausted: {errmsg}")
    delay_s = later.delay_s
    delay = delay_s if delay_s is not None else sender.commands.retry_delay(delivery.attempt)
    retry_at = sender.wall() + delay
    await _best_effort(
        order.mark_retrying(sender.store, cmd, at=retry_at, ttl_s=settings.ledger_ttl_s)
    )
    metrics.RETRIES.labels(why).inc()
    log.info("send.retry", why=why, errcode=errcode, attempt=delivery.attempt)
    raise Retry(errmsg, delay_s=delay_s, nothing_done=later.nothing_done, note=_MARKED.get())


async def _best_effort(step: Awaitable[None]) -> None:
    """A store write that helps but must not stand in the way of reporting (store down)."""
    try:
        await step
    except StoreError as exc:
        log.warning("send.store_write_skipped", error=str(exc))


async def _settle(
    sender: Sender,
    cmd: SendCommand,
    delivery: Delivery,
    fact: Outcome,
    *,
    owned: bool = False,
    also: list[Write] | None = None,
) -> None:
    """Record the outcome (so a redelivery repeats it), free the successor, publish it.

    ``owned``: this delivery holds the command's ledger mark and replaces it, in one store
    call with the successor's step and the ``also`` writes; otherwise the outcome is recorded
    only if the command is not known yet (else that is what counts)."""
    settings, store = sender.settings, sender.store
    raw, now, ttl = encode(fact), sender.wall(), settings.ledger_ttl_s
    if owned:
        record = ledger.outcome(cmd.id, raw, at=now, ttl_s=ttl)
        await store.set_many([record, *(also or ()), *order.done(cmd, ttl_s=ttl)])
    else:
        known = await ledger.settle_once(store, cmd.id, raw, at=now, ttl_s=ttl)
        if known is not None:
            await _known(sender, cmd, delivery, known)
            return
        await order.mark_done(store, cmd, ttl_s=ttl)
    await publish_fact(sender.bus, fact)
    outcome = fact.routing_key().split(".")[1]
    metrics.COMMANDS.labels(cmd.msgtype, outcome).inc()
    if isinstance(fact, Sent):
        # The common case is counted in metrics; a line per message is logged at debug only.
        log.debug("send.sent", latency_ms=fact.latency_ms, attempts=fact.attempts)
    elif isinstance(fact, Rejected):
        log.info("send.rejected", reason=fact.reason, errcode=fact.errcode)
    elif isinstance(fact, Failed):
        log.warning("send.failed", errcode=fact.errcode, errmsg=fact.errmsg)


async def _sent_unrecorded(sender: Sender, cmd: SendCommand, fact: Sent, exc: StoreError) -> None:
    metrics.OUTCOME_UNRECORDED.inc()
    log.warning("send.outcome_not_recorded", error=str(exc))
    ttl = sender.settings.ledger_ttl_s
    writes = [ledger.outcome(cmd.id, encode(fact), at=sender.wall(), ttl_s=ttl)]
    writes += order.done(cmd, ttl_s=ttl)
    task = asyncio.get_running_loop().create_task(_record_later(sender.store, writes))
    sender.recording.add(task)
    task.add_done_callback(sender.recording.discard)
    await publish_fact(sender.bus, fact)
    metrics.COMMANDS.labels(cmd.msgtype, "sent").inc()


async def _record_later(store: Store, writes: list[Write]) -> None:
    """Write an outcome the store did not take at once, trying for about a minute."""
    for pause_s in RECORD_PAUSES_S:
        await asyncio.sleep(pause_s)  # the store is away: try again later, not a busy loop
        try:
            await store.set_many(writes)
        except StoreError:
            continue
        log.info("send.outcome_recorded_late")
        return
    log.error("send.outcome_never_recorded", key=writes[0].key)


RECORD_PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


async def _not_delivered(sender: Sender, cmd: SendCommand, slot: GrantKind | None) -> None:
    """WeChat definitely did not deliver: give the slot back and drop this delivery's mark,
    so the next try sends. Best effort: with the store down, the mark ages into an ambiguous
    failure, which is reported, never silent."""
    try:
        await _release(sender, cmd, slot)
        await ledger.clear(sender.store, cmd.id)
    except StoreError as exc:
        log.error("send.mark_not_cleared", error=str(exc))


async def _release(sender: Sender, cmd: SendCommand, slot: GrantKind | None) -> None:
    if slot is None:
        return
    key = windows.window_key(cmd.appid, cmd.openid)
    await windows.release(sender.store, key, slot, now=sender.clock())
    metrics.QUOTA.labels("released").inc()


async def _claim(
    sender: Sender, cmd: SendCommand, delivery: Delivery, *, spends_slot: bool
) -> Claim[WindowTake] | Claim[None] | None:
    """Take what a call needs, in one atomic store call: the command's ledger mark (only if
    nothing is known of it: two deliveries never both call), a slot of the user's reply
    window (unless ``spends_slot`` is False), a token of the shared rate limit, and the
    successor's wait. All or nothing; None when the command was settled or handed back
    instead (:func:`decide.claimed` says which from the answer). A short wait for the rate
    limit is a pace (the call keeps its place), a long one goes back to the bus.
    """
    settings, store = sender.settings, sender.store
    window = windows.window_key(cmd.appid, cmd.openid) if spends_slot else None
    limited = settings.send_rate_per_s > 0
    waited = 0.0
    opened = windows.grant_opened_by(cmd, settings) if window is not None else None
    owner = new_id()
    # A copy that may repeat one handled before, whose type must not be sent twice, is
    # checked against the store's memory (see decide.Forgotten).
    doubted = not delivery.fresh and cmd.msgtype not in settings.ambiguous_retried
    made = born(cmd) if doubted else None
    while True:
        now = sender.wall()
        # The next of its cause waits at least as long as this call may take (a refused token
        # means a second call), instead of spending its attempts meanwhile.
        busy_until = now + _busy_for(settings)
        # From here on a mark of this delivery's may be in the store, answer or not.
        _MARKED.set(owner)
        claim = await store.claim(
            ledger.inflight(cmd.id, at=now, ttl_s=settings.ledger_ttl_s, owner=owner),
            step=None if window is None else windows.taking(window, now=sender.clock()),
            rate=_rate_limit(sender, now) if limited else None,
            also=order.retrying(cmd, at=busy_until, ttl_s=settings.ledger_ttl_s),
        )
        if claim.ok:
            if spends_slot:
                metrics.QUOTA.labels("granted").inc()
            if limited:
                metrics.RATE_WAIT_SECONDS.observe(waited)
        entry = None if claim.known is None else ledger.parse(cmd.id, claim.known)
        then = decide.claimed(
            claim,
            entry=entry,
            note=None if entry is None else delivery.note,
            born=made,
            may_open=opened is not None,
            waited_s=waited,
            max_pace_wait_s=settings.max_pace_wait_s,
        )
        if isinstance(then, decide.Go):
            return claim
        if isinstance(then, decide.Forgotten):
            # The ledger cannot say whether an earlier copy was sent before the store forgot:
            # report it, never send it twice.
            metrics.LEDGER_FORGOTTEN.inc()
            await _ambiguous(sender, cmd, delivery, "the store lost its memory of it")
            return None
        if isinstance(then, decide.TakeOver):
            await store.delete_if_equals(ledger.ledger_key(cmd.id), then.mark)
            metrics.RETRIES.labels("mark_taken_over").inc()
            continue
        if isinstance(then, decide.AlreadyKnown):
            await _known(sender, cmd, delivery, then.entry)
            return None
        if isinstance(then, decide.OpenWindow):
            if window is not None and opened is not None:
                await windows.grant(store, window, opened, now=sender.clock())
                metrics.WINDOW_GRANTS.labels(opened.kind).inc()
            opened = None
            continue
        if isinstance(then, decide.WindowShut):
            metrics.QUOTA.labels(then.reason).inc()
            await _refused_by_window(sender, cmd, delivery, then.reason, detail=then.reason)
            return None
        if isinstance(then, decide.Later):
            await _retry_or_fail(sender, cmd, delivery, then)
        # Pacing, not retrying: the call is due in ``wait_s`` seconds and keeps its place.
        await asyncio.sleep(then.wait_s)
        waited += then.wait_s


def _rate_limit(sender: Sender, now: float) -> RateLimit:
    settings = sender.settings
    return RateLimit(
        key=f"sender:rate:{settings.appid}",
        rate=settings.send_rate_per_s,
        burst=settings.send_rate_burst,
        now=now,
    )


# --- facts -------------------------------------------------------------------------------------


F = TypeVar("F", Sent, Rejected, Failed)


def _fact(kind: type[F], cmd: SendCommand, delivery: Delivery, **fields: Any) -> F:
    return kind(
        # One id per command and kind of outcome: a repeated fact is recognisably the same.
        id=derived_id(cmd.id, kind.__name__),
        appid=cmd.appid,
        openid=cmd.openid,
        correlation_id=cmd.correlation_id,
        command_id=cmd.id,
        cause_id=cmd.cause_id,
        msgtype=cmd.msgtype,
        attempts=delivery.attempt,
        **fields,
    )


def _sent(cmd: SendCommand, delivery: Delivery, latency_s: float) -> Sent:
    return _fact(Sent, cmd, delivery, latency_ms=round(latency_s * 1000, 3))


def _rejected(
    cmd: SendCommand, delivery: Delivery, reason: RejectReason, errcode: int | None
) -> Rejected:
    return _fact(Rejected, cmd, delivery, reason=reason, errcode=errcode)


def _failed(
    cmd: SendCommand, delivery: Delivery, errmsg: str, errcode: int | None = None
) -> Failed:
    return _fact(Failed, cmd, delivery, errcode=errcode, errmsg=errmsg)


def _failed_as(cmd: SendCommand, delivery: Delivery, fail: decide.Fail) -> Failed:
    return _failed(cmd, delivery, fail.errmsg, fail.errcode)
