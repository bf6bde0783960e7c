"""Pushes on the wire, as WeChat sends them, kept so that one can be sent again unchanged.

WeChat resends a push whose answer was slow or lost: the very same request (WECHAT.md §6).
:class:`Wire` builds each push once (signed, encrypted, XML) and can post it again byte for
byte, which is what the demo's retry step shows.
"""

from __future__ import annotations

import secrets
import time

import aiohttp
import msgspec

from libs.common.wechat import codec
from libs.common.wechat.push import build_push
from services.simulator.pusher import Pusher
from services.simulator.state import SimState
from services.simulator.users import UserAction


class Push(msgspec.Struct, frozen=True, kw_only=True):
    """One push as it goes over the wire: what to post again for a retry."""

    message: codec.Message
    query: dict[str, str]
    body: bytes


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """What the push URL answered, read as WeChat reads it."""

    sent_at: float
    """Unix seconds when the request left."""
    latency_ms: float
    kind: str
    """``success``, ``empty``, ``transfer_customer_service``, ``invalid`` or ``failed``."""
    detail: str = ""


class Wire:
    """Posts pushes to one push URL as the simulated WeChat of one mini program."""

    def __init__(self, pusher: Pusher, sim: SimState) -> None:
        self.pusher = pusher
        self.sim = sim

    def build(self, message: codec.Message) -> Push:
        """Sign and encrypt ``message`` once, with a nonce of its own."""
        query, body = build_push(
            message,
            token=self.pusher.token,
            cipher=self.pusher.cipher,
            mode=self.pusher.mode,
            fmt=self.pusher.fmt,
            timestamp=message.create_time,
            nonce=str(secrets.randbelow(10**10)),
        )
        return Push(message=message, query=query, body=body)

    async def send(self, push: Push, *, first: bool = True) -> Answer:
        """Post ``push``; the first time, WeChat's side learns that the user acted (which is
        what opens the reply window); a resend changes nothing there."""
        if first:
            entered = isinstance(push.message, codec.EnterSessionEvent)
            action: UserAction = "enter" if entered else "message"
            self.sim.user_action(push.message.from_user, action, float(push.message.create_time))
        sent_at = time.time()
        started = time.perf_counter()
        content_type = "text/xml" if self.pusher.fmt == "xml" else "application/json"
        try:
            async with self.pusher.session.post(
                self.pusher.url,
                params=push.query,
                data=push.body,
                headers={"Content-Type": content_type},
                timeout=self.pusher.timeout,
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            latency = (time.perf_counter() - started) * 1000
            return Answer(sent_at=sent_at, latency_ms=latency, kind="failed", detail=repr(exc))
        latency = (time.perf_counter() - started) * 1000
        if status != 200:
            detail = f"HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"
            return Answer(sent_at=sent_at, latency_ms=latency, kind="failed", detail=detail)
        reply = self.pusher.read_reply(raw, push.message.from_user)
        return Answer(sent_at=sent_at, latency_ms=latency, kind=reply.kind, detail=reply.reason)
