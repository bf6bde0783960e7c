"""What the router remembers about each user between messages, kept in the store.

WeChat keeps pushing the messages of a user who waits in the agent queue, so the router
remembers when it handed a user to the agents (rules transfer them again instead of
answering); it remembers the last day it heard from the user (first contact of the day, e.g.
for a once-a-day welcome) and the tags rules gave the session. The session expires
``ttl_s`` after its last change.

One key per user, read before a decision and written after it. Two replicas deciding for
the same user at the same instant may each write their own change and the later one wins:
at worst a tag given in that instant is lost, a trade for one read per decision.
"""

from __future__ import annotations

import msgspec

from libs.common.store import Store


class Session(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    transferred_at: float | None = None
    """When a decision last handed this user to the agents (unix seconds, the event's time)."""
    last_day: str = ""
    """The last day (YYYY-MM-DD in the rules' time zone) an event of this user was decided."""
    tags: tuple[str, ...] = ()


class SessionChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What one decision changes in a session; applied to the freshest copy read."""

    transferred_at: float | None = None
    day: str
    add_tags: tuple[str, ...] = ()

    def apply(self, session: Session) -> Session:
        transferred_at = session.transferred_at
        if self.transferred_at is not None:
            transferred_at = max(self.transferred_at, transferred_at or 0.0)
        # Redelivered old events must not move "today" backwards (ISO dates sort as text).
        last_day = max(self.day, session.last_day)
        tags = session.tags
        if self.add_tags and not set(self.add_tags) <= set(tags):
            tags = tuple(sorted({*tags, *self.add_tags}))
        return Session(transferred_at=transferred_at, last_day=last_day, tags=tags)


EMPTY = Session()
_decoder = msgspec.json.Decoder(Session)
_encoder = msgspec.json.Encoder()


def key(openid: str) -> str:
    return "router:session:" + openid


def decode(raw: bytes | None) -> Session:
    """A missing session is an empty one; so is an unreadable one (it only steers rules)."""
    if raw is None:
        return EMPTY
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        return EMPTY


async def load(store: Store, openid: str) -> Session:
    return decode(await store.get(key(openid)))


async def save(store: Store, openid: str, session: Session, *, ttl_s: float) -> None:
    await store.set(key(openid), _encoder.encode(session), ttl_s=ttl_s)
