"""The stage the demo's steps play on, and the checks and lines they share.

A :class:`Stage` holds the wire to the push URL, the simulated WeChat (what users received),
the observer (what happened on the bus) and the bus (to publish as an extension would). Its
waits are polled deadlines that end as soon as what they wait for is there; a wait that runs
out raises :class:`StepFailed` saying what never happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from libs.common.bus import Bus
from libs.common.schemas import (
    DecisionMade,
    Failed,
    InboundEvent,
    Outcome,
    Rejected,
    SendCommand,
    SendText,
    Sent,
    SessionEntered,
    TextReceived,
    UserMessage,
)
from libs.common.wechat import codec
from services.demo.errors import StepFailed
from services.demo.observer import Observer
from services.demo.wire import Answer, Push, Wire
from services.simulator.state import SimState
from services.simulator.users import Delivered

T = TypeVar("T")

STEP_DEADLINE_S = 45.0
"""How long a step waits for what it expects: generous, the machine may be busy; a step that
passes is done as soon as its outcome is seen."""


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the conversation: when, who, what."""

    at: float
    who: str
    text: str


class StepResult(msgspec.Struct, kw_only=True):
    number: int
    name: str
    title: str
    lines: list[Line] = msgspec.field(default_factory=list)
    verdict: str = ""
    """One line saying what the step proved (when it passed)."""
    problem: str | None = None
    """What did not happen (when it failed)."""

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class Stage:
    """What the steps share: the wire, WeChat's state, the bus, and what happened so far."""

    wire: Wire
    sim: SimState
    observer: Observer
    bus: Bus
    openid: str
    appid: str
    gh_id: str
    deadline_s: float = STEP_DEADLINE_S
    pushes: dict[str, Push] = field(default_factory=dict)
    received: int = 0
    """Messages of the user's inbox already accounted for by earlier steps."""
    last_message_time: int = 0

    # -- building blocks ------------------------------------------------------------------------

    async def message_time(self) -> int:
        """A CreateTime for the next user message, later than the previous one.

        CreateTime has whole seconds, and a reply window is renewed only by a message of a
        later second; two user messages within one second would share one window.
        """
        while int(self.sim.now()) <= self.last_message_time:
            await _pause()
        self.last_message_time = int(self.sim.now())
        return self.last_message_time

    async def inbound(self, step: str, push: Push) -> InboundEvent:
        """The event ingress published for ``push`` (found by MsgId, or by time for events)."""
        sent = push.message

        def probe() -> InboundEvent | None:
            for event in self.observer.of(TextReceived, openid=self.openid) + self.observer.of(
                SessionEntered, openid=self.openid
            ):
                if _same_push(event, sent):
                    return event
            return None

        return await self._wait(step, probe, f"no event on kf.events for the {sent.msg_type}")

    async def decision(self, step: str, event: InboundEvent) -> DecisionMade:
        def probe() -> DecisionMade | None:
            found = [d for d in self.observer.of(DecisionMade) if d.event_id == event.id]
            return found[0] if found else None

        return await self._wait(step, probe, "the router made no decision")

    async def commands(self, step: str, cause_id: str, count: int) -> list[SendCommand]:
        def probe() -> list[SendCommand] | None:
            found = [c for c in self.observer.of(SendCommand) if c.cause_id == cause_id]
            return sorted(found, key=lambda c: c.seq) if len(found) >= count else None

        return await self._wait(step, probe, f"the router did not ask for {count} messages")

    async def outcomes(self, step: str, commands: Sequence[SendCommand]) -> list[Outcome]:
        wanted = [c.id for c in commands]

        def probe() -> list[Outcome] | None:
            by_command = {o.command_id: o for o in self.observer.of(Outcome)}
            if all(i in by_command for i in wanted):
                return [by_command[i] for i in wanted]
            return None

        return await self._wait(step, probe, "the sender reported no outcome for every message")

    async def deliveries(self, step: str, count: int) -> list[Delivered]:
        """The next ``count`` messages the user received, once they all arrived."""
        start = self.received

        def probe() -> list[Delivered] | None:
            inbox = self.sim.inbox(self.openid)
            return inbox[start : start + count] if len(inbox) >= start + count else None

        found = await self._wait(step, probe, f"WeChat did not deliver {count} message(s)")
        self.received += count
        return found

    async def _wait(self, step: str, probe: Callable[[], T | None], what: str) -> T:
        try:
            return await self.observer.wait_for(probe, deadline_s=self.deadline_s, what=what)
        except TimeoutError as exc:
            raise StepFailed(step, str(exc)) from None

    async def replies(
        self, step: str, event: InboundEvent, msgtypes: Sequence[str], lines: list[Line]
    ) -> tuple[list[SendCommand], list[Delivered]]:
        """The router's commands for ``event`` were sent and delivered in order, as
        ``msgtypes`` says."""
        commands = await self.commands(step, event.id, len(msgtypes))
        got = [c.msgtype for c in commands]
        if got != list(msgtypes):
            raise StepFailed(step, f"the router asked for {got}, expected {list(msgtypes)}")
        outcomes = await self.outcomes(step, commands)
        for command, outcome in zip(commands, outcomes, strict=True):
            if not isinstance(outcome, Sent):
                raise StepFailed(step, f"{command.msgtype} was not sent: {outcome_text(outcome)}")
        delivered = await self.deliveries(step, len(commands))
        check_delivered(step, commands, delivered)
        lines.extend(delivery_line(d) for d in delivered)
        return commands, delivered

    async def expect_answer(self, step: str, push: Push, answer: Answer, kind: str) -> Line:
        if answer.kind != kind:
            detail = f" ({answer.detail})" if answer.detail else ""
            raise StepFailed(step, f"ingress answered {answer.kind}{detail}, expected {kind}")
        what = _push_name(push.message)
        return Line(
            at=answer.sent_at,
            who="WeChat",
            text=f"pushes {what} (safe mode, XML) → ingress answers {kind} "
            f"in {answer.latency_ms:.0f} ms",
        )


# -- checks and lines -----------------------------------------------------------------------------


def expect_rule(step: str, decision: DecisionMade, rule: str, *, transfer: bool) -> None:
    if decision.rule != rule or decision.transfer != transfer:
        raise StepFailed(
            step,
            f"rule {decision.rule!r} decided (transfer {decision.transfer}), "
            f"expected rule {rule!r} (transfer {transfer})",
        )


def check_delivered(
    step: str, commands: Sequence[SendCommand], delivered: Sequence[Delivered]
) -> None:
    """What WeChat delivered is what was asked for, in the same order."""
    asked = [c.msgtype for c in commands]
    got = [d.msgtype for d in delivered]
    if got != asked:
        raise StepFailed(step, f"the user received {got}, expected {asked} in that order")
    for command, item in zip(commands, delivered, strict=True):
        if isinstance(command, SendText) and item.body.get("content") != command.content:
            raise StepFailed(step, f"the user received other text than 「{command.content}」")


def duplicates(observer: Observer, openid: str, msg_id: int) -> list[UserMessage]:
    """The events on the bus for one WeChat MsgId (one, unless deduplication failed)."""
    return [e for e in observer.of(UserMessage, openid=openid) if e.msg_id == msg_id]


def decision_line(decision: DecisionMade, count: int) -> Line:
    actions = ", ".join(decision.actions or [decision.action])
    messages = f"{count} message{'s' if count != 1 else ''}" if "reply" in actions else ""
    return Line(
        at=decision.time_ms / 1000,
        who="router",
        text=f'rule "{decision.rule}" → {actions}{": " + messages if messages else ""} '
        f"(decided in {decision.latency_us / 1000:.1f} ms)",
    )


def delivery_line(item: Delivered) -> Line:
    return Line(at=item.time, who="WeChat", text=f"delivers to the user {describe(item)}")


def describe(item: Delivered) -> str:
    body = item.body
    if item.msgtype == "text":
        return f"[text] 「{short(str(body.get('content', '')))}」"
    if item.msgtype == "image":
        return f"[image] media_id {str(body.get('media_id', ''))[:16]}…"
    if item.msgtype == "miniprogrampage":
        return f"[mini program card] 「{body.get('title', '')}」 → {body.get('pagepath', '')}"
    if item.msgtype == "link":
        return f"[link] 「{body.get('title', '')}」 → {body.get('url', '')}"
    return f"[{item.msgtype}]"


def short(text: str, limit: int = 48) -> str:
    flat = " ⏎ ".join(part.strip() for part in text.splitlines())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _push_name(message: codec.Message) -> str:
    if isinstance(message, codec.EnterSessionEvent):
        return "event user_enter_tempsession"
    msg_id = getattr(message, "msg_id", None)
    return f"{message.msg_type} MsgId {msg_id}" if msg_id else message.msg_type


def _same_push(event: InboundEvent, sent: codec.Message) -> bool:
    if isinstance(event, UserMessage):
        return event.msg_id == getattr(sent, "msg_id", None)
    return (
        isinstance(event, SessionEntered)
        and isinstance(sent, codec.EnterSessionEvent)
        and event.create_time == sent.create_time
    )


def outcome_text(outcome: Outcome) -> str:
    if isinstance(outcome, Rejected):
        return f"rejected: {outcome.reason}"
    if isinstance(outcome, Failed):
        return f"failed: {outcome.errmsg or outcome.errcode}"
    return "sent"


async def _pause() -> None:
    # Waiting for the clock's next second (see message_time), not for a test condition.
    await asyncio.sleep(0.05)
