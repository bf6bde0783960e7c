"""What a decision becomes: the fact, the send commands, the extension topics, the session change.

A :class:`Plan` is built once per event and stored under the event's id before any of it is
published, so that a redelivered event carries out the same plan (same ids, same texts)
instead of deciding again, and a finished plan is never carried out twice.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from libs.common.schemas import (
    Command,
    DecisionMade,
    InboundEvent,
    SendTyping,
    SessionEntered,
    UserMessage,
    derived_id,
    now_ms,
)
from services.router.engine import Decision, ReplyPart
from services.router.sessions import SessionChange


class Plan(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    rule: str
    transfer: bool
    done: bool = False
    """Everything below was published; only ``rule`` and ``transfer`` are kept then."""
    fact: DecisionMade | None = None
    commands: list[Command] = []
    extensions: list[str] = []
    change: SessionChange | None = None

    def finished(self) -> Plan:
        return Plan(rule=self.rule, transfer=self.transfer, done=True)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Plan)


def key(event_id: str) -> str:
    return "router:plan:" + event_id


def encode(plan: Plan) -> bytes:
    return _encoder.encode(plan)


def decode(raw: bytes) -> Plan:
    return _decoder.decode(raw)


_TYPING = SendTyping(appid="", openid="", correlation_id="")


def _opens(event: InboundEvent) -> Literal["message", "enter"] | None:
    """Which reply window the answered event opens at WeChat (WECHAT.md §7.1)."""
    if isinstance(event, UserMessage):
        return "message"
    if isinstance(event, SessionEntered):
        return "enter"
    return None


def commands(decision: Decision, event: InboundEvent) -> list[Command]:
    """The decision's messages for this user, in order, with ids stable across redeliveries."""
    parts = [ReplyPart(_TYPING)] if decision.typing else []
    parts.extend(decision.replies)
    sent_ms = now_ms()
    out: list[Command] = []
    for seq, part in enumerate(parts):
        changes: dict[str, object] = {
            "id": derived_id(event.id, str(seq)),
            "appid": event.appid,
            "openid": event.openid,
            "correlation_id": event.correlation_id,
            "time_ms": sent_ms,
            "cause_id": event.id,
            "seq": seq,
            "total": len(parts),
            "opens": _opens(event),
            "opened_at": event.create_time,
        }
        if part.template is not None:
            changes["content"] = part.template.render(event, decision.at)
        out.append(msgspec.structs.replace(part.proto, **changes))
    return out


def plan(decision: Decision, event: InboundEvent, *, late: bool, latency_us: int) -> Plan:
    fact = DecisionMade(
        id=derived_id(event.id, "decision"),
        appid=event.appid,
        openid=event.openid,
        correlation_id=event.correlation_id,
        event_id=event.id,
        rule=decision.rule,
        action=decision.action,
        actions=list(decision.actions),
        transfer=decision.transfer,
        late=late,
        latency_us=latency_us,
    )
    return Plan(
        rule=decision.rule,
        transfer=decision.transfer,
        fact=fact,
        commands=commands(decision, event),
        extensions=list(decision.extensions),
        change=decision.session_change(),
    )
