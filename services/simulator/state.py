"""The simulated WeChat's whole state, with the rules applied to it.

Tests hold a :class:`SimState` to look inside and to move its clock; the aiohttp handlers
are thin readers of requests around its methods. Every method is synchronous, so on one
event loop each call is atomic.
"""

from __future__ import annotations

from typing import Any

import msgspec

from services.simulator.clock import SimClock
from services.simulator.config import SimConfig
from services.simulator.errors import ApiError
from services.simulator.faults import FaultPlan
from services.simulator.media import Media, MediaStore
from services.simulator.messages import parse_send, parse_typing
from services.simulator.stats import Stats
from services.simulator.tokens import TokenBook, check_credentials
from services.simulator.users import Delivered, User, UserAction


class Outcomes(msgspec.Struct, frozen=True, kw_only=True):
    """The messages to a group of users (``GET /sim/outcomes?prefix=``)."""

    users: int
    messages_sent: int
    """Messages the users sent (pushes the simulator was told of)."""
    delivered: int
    """Messages the users received."""
    refused: dict[int, int]
    """Messages to them that were refused, by errcode."""


class SimState:
    def __init__(self, config: SimConfig | None = None, *, clock: SimClock | None = None) -> None:
        self.config = config or SimConfig()
        self.clock = clock or SimClock()
        self.reset()

    def reset(self) -> None:
        """Forget every token, user, media, fault and count; the clock keeps its time."""
        self.tokens = TokenBook(self.config)
        self.users: dict[str, User] = {}
        self.media = MediaStore(self.config)
        self.faults = FaultPlan()
        self.stats = Stats()

    def now(self) -> float:
        return self.clock.now()

    # -- access_token --------------------------------------------------------------------------

    def get_token(self, *, grant_type: str, appid: str, secret: str) -> tuple[str, int]:
        self.stats.tokens["token"] += 1
        check_credentials(self.config, grant_type=grant_type, appid=appid, secret=secret)
        return self.tokens.issue(self.now())

    def get_stable_token(
        self, *, grant_type: str, appid: str, secret: str, force_refresh: bool = False
    ) -> tuple[str, int]:
        self.stats.tokens["stable_token"] += 1
        check_credentials(self.config, grant_type=grant_type, appid=appid, secret=secret)
        value, expires_in, outcome = self.tokens.stable(self.now(), force=force_refresh)
        self.stats.tokens["stable_" + outcome] += 1
        return value, expires_in

    def check_token(self, token: str | None) -> None:
        self.tokens.check(token, self.now())

    def token_for_tests(self) -> str:
        """A valid /cgi-bin/token token without going through HTTP (not counted)."""
        return self.tokens.issue(self.now())[0]

    # -- users ---------------------------------------------------------------------------------

    def user(self, openid: str) -> User:
        found = self.users.get(openid)
        if found is None:
            found = self.users[openid] = User(openid=openid)
        return found

    def peek(self, openid: str) -> User:
        """The user as WeChat knows them, without making a stranger known."""
        return self.users.get(openid) or User(openid=openid)

    def user_action(self, openid: str, action: UserAction, at: float | None = None) -> User:
        """The user wrote to us (``message``) or opened the chat (``enter``) at ``at``
        (default now): what opens the reply window."""
        user = self.user(openid)
        user.record(action, self.now() if at is None else at, self.config)
        return user

    def user_message(self, openid: str, at: float | None = None) -> User:
        return self.user_action(openid, "message", at)

    def user_entered(self, openid: str, at: float | None = None) -> User:
        return self.user_action(openid, "enter", at)

    def inbox(self, openid: str) -> list[Delivered]:
        found = self.users.get(openid)
        return list(found.inbox) if found else []

    def _recipient(self, openid: str) -> User:
        found = self.users.get(openid)
        if found is None:
            if self.config.known_users_only:
                raise ApiError(40003)
            # A stranger has no window; creating them lets tests see the refusal.
            found = self.user(openid)
        return found

    # -- customer service messages -------------------------------------------------------------

    def send(self, body: bytes) -> Delivered:
        """``/cgi-bin/message/custom/send``: validate, apply the window, deliver."""
        request = parse_send(body, self.config)
        now = self.now()
        try:
            for media_id in request.media_ids:
                self.media.get(media_id, now)
            user = self._recipient(request.touser)
            delivered = user.deliver(request.msgtype, request.body, now)
        except ApiError as exc:
            known = self.users.get(request.touser)
            if known is not None:
                known.refused[exc.errcode] = known.refused.get(exc.errcode, 0) + 1
            raise
        self.stats.delivered += 1
        return delivered

    def outcomes(self, prefix: str) -> Outcomes:
        """What became of the messages to every user whose openid starts with ``prefix``."""
        users = [u for openid, u in self.users.items() if openid.startswith(prefix)]
        refused: dict[int, int] = {}
        for user in users:
            for code, n in user.refused.items():
                refused[code] = refused.get(code, 0) + n
        return Outcomes(
            users=len(users),
            messages_sent=sum(u.messages_sent for u in users),
            delivered=sum(len(u.inbox) for u in users),
            refused=dict(sorted(refused.items())),
        )

    def typing(self, body: bytes) -> None:
        request = parse_typing(body)
        self._recipient(request.touser).typing(request.command, self.now(), self.config)

    # -- media ---------------------------------------------------------------------------------

    def upload_media(self, data: bytes, *, filename: str | None = None) -> Media:
        """``/cgi-bin/media/upload`` with the part's ``filename``; without one, an image a user
        sent (what an image push's MediaId names)."""
        return self.media.put(data, self.now(), filename=filename)

    def get_media(self, media_id: str | None) -> Media:
        return self.media.get(media_id, self.now())

    def snapshot(self) -> dict[str, Any]:
        return {"now": self.now(), **self.stats.snapshot()}
