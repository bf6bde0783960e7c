"""What WeChat knows about each user: reply window, typing state, and what they received.

The window rules are WECHAT.md §7.1: a user message opens (or renews) a grant of 5 messages
within 48 hours; entering the chat opens a grant of 2 within a minute. A send takes its slot
from the valid grant that ends first. Typing (§8) needs an exchange in the last 30 s, lasts
15 s, cannot be repeated while on, and is cancelled by a delivered message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from services.simulator.config import SimConfig
from services.simulator.errors import ApiError

GrantKind = Literal["message", "enter"]
UserAction = Literal["message", "enter"]


@dataclass(slots=True)
class Grant:
    count: int
    until: float


class Delivered(msgspec.Struct, frozen=True, kw_only=True):
    """One message the user received."""

    seq: int
    time: float
    msgtype: str
    body: dict[str, Any]
    """The msgtype's object of the send request (e.g. ``{"content": "…"}`` for text)."""


@dataclass(slots=True)
class User:
    openid: str
    grants: dict[GrantKind, Grant] = field(default_factory=dict)
    last_exchange: float | None = None
    typing_until: float | None = None
    inbox: list[Delivered] = field(default_factory=list)
    messages_sent: int = 0
    """How many messages this user sent us (pushes that opened a window)."""
    entered: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    """Messages to this user that WeChat refused, by errcode."""

    def record(self, action: UserAction, at: float, config: SimConfig) -> None:
        if action == "message":
            # A new message renews the grant to the full count (WECHAT.md §15.3).
            self.grants["message"] = Grant(
                count=config.window_message_count, until=at + config.window_message_s
            )
            self.last_exchange = max(at, self.last_exchange or at)
            self.messages_sent += 1
        else:
            self.grants["enter"] = Grant(
                count=config.window_enter_count, until=at + config.window_enter_s
            )
            self.entered += 1

    def usable_grant(self, now: float) -> tuple[GrantKind, Grant]:
        """The grant a send would take from; 45015 when none is open, 45047 when spent."""
        valid = [(k, g) for k, g in self.grants.items() if now < g.until]
        if not valid:
            raise ApiError(45015)
        usable = [(k, g) for k, g in valid if g.count > 0]
        if not usable:
            raise ApiError(45047)
        return min(usable, key=lambda kg: kg[1].until)

    def deliver(self, msgtype: str, body: dict[str, Any], now: float) -> Delivered:
        _, grant = self.usable_grant(now)
        grant.count -= 1
        item = Delivered(seq=len(self.inbox) + 1, time=now, msgtype=msgtype, body=body)
        self.inbox.append(item)
        self.last_exchange = now
        self.typing_until = None
        return item

    def typing(self, command: str, now: float, config: SimConfig) -> None:
        if command == "CancelTyping":
            # Stopping an indicator harms no one, so it is allowed whatever the window.
            self.typing_until = None
            return
        self.usable_grant(now)
        if self.typing_until is not None and now < self.typing_until:
            raise ApiError(45081)
        if self.last_exchange is None or now - self.last_exchange > config.typing_exchange_s:
            raise ApiError(45080)
        self.typing_until = now + config.typing_duration_s

    def is_typing(self, now: float) -> bool:
        return self.typing_until is not None and now < self.typing_until

    def view(self, now: float) -> dict[str, Any]:
        return {
            "openid": self.openid,
            "grants": {
                kind: {"count": g.count, "until": g.until, "open": now < g.until}
                for kind, g in self.grants.items()
            },
            "last_exchange": self.last_exchange,
            "typing": self.is_typing(now),
            "typing_until": self.typing_until if self.is_typing(now) else None,
            "received": len(self.inbox),
            "messages_sent": self.messages_sent,
            "entered": self.entered,
            "refused": {str(code): n for code, n in sorted(self.refused.items())},
        }
