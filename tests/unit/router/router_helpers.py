"""Events, rules and clocks for the router's unit tests."""

from __future__ import annotations

import asyncio
import itertools
import textwrap
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from libs.common.schemas import (
    ImageReceived,
    InboundEvent,
    MiniProgramPageReceived,
    OtherEventReceived,
    OtherMessageReceived,
    SessionEntered,
    TextReceived,
)
from services.router.compiler import compile_text
from services.router.engine import Decision, Ruleset
from services.router.errors import Problem, RulesError
from services.router.sessions import EMPTY, Session

T = TypeVar("T")
SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Wednesday, 10:30 in Shanghai.
WEDNESDAY_MORNING = datetime(2026, 11, 25, 10, 30, tzinfo=SHANGHAI).timestamp()
_msg_ids = itertools.count(2**53 + 1)


def _common(openid: str, ts: float) -> dict[str, Any]:
    return {
        "appid": "wx0123456789abcdef",
        "openid": openid,
        "correlation_id": "corr-1",
        "to_user": "gh_0123456789ab",
        "create_time": int(ts),
    }


def text(content: str, *, openid: str = "o-user", ts: float = WEDNESDAY_MORNING) -> TextReceived:
    return TextReceived(**_common(openid, ts), msg_id=next(_msg_ids), content=content)


def image(*, openid: str = "o-user", ts: float = WEDNESDAY_MORNING) -> ImageReceived:
    return ImageReceived(**_common(openid, ts), msg_id=next(_msg_ids), media_id="MEDIA")


def card(
    path: str, *, title: str = "红色卫衣", openid: str = "o-user", ts: float = WEDNESDAY_MORNING
) -> MiniProgramPageReceived:
    return MiniProgramPageReceived(
        **_common(openid, ts), msg_id=next(_msg_ids), title=title, page_path=path
    )


def other_message(msg_type: str = "voice", *, ts: float = WEDNESDAY_MORNING) -> InboundEvent:
    return OtherMessageReceived(**_common("o-user", ts), msg_id=next(_msg_ids), msg_type=msg_type)


def enter(
    session_from: str = "", *, openid: str = "o-user", ts: float = WEDNESDAY_MORNING
) -> SessionEntered:
    return SessionEntered(**_common(openid, ts), session_from=session_from)


def other_event(name: str = "debug_demo", *, ts: float = WEDNESDAY_MORNING) -> InboundEvent:
    return OtherEventReceived(**_common("o-user", ts), event=name)


FALLBACK = "fallback:\n  reply: 收到\n"


def rules(body: str, *, fallback: str = FALLBACK) -> Ruleset:
    """Compile a rules document; ``body`` is dedented, the fallback appended."""
    return compile_text(textwrap.dedent(body) + fallback, source="test.yaml")


def decide(
    rs: Ruleset, event: InboundEvent, session: Session = EMPTY, *, ts: float | None = None
) -> Decision:
    return rs.decide(event, session, ts=float(event.create_time) if ts is None else ts)


def problems(document: str) -> tuple[Problem, ...]:
    """The problems of a rules document that must not compile."""
    try:
        compile_text(textwrap.dedent(document), source="test.yaml")
    except RulesError as exc:
        return exc.problems
    raise AssertionError("the document compiled, but problems were expected")


def only_problem(document: str) -> Problem:
    found = problems(document)
    assert len(found) == 1, [p.render("test.yaml") for p in found]
    return found[0]


async def until(probe: Callable[[], T], check: Callable[[T], bool] = bool, *, what: str) -> T:
    """Poll ``probe`` on the event loop until ``check`` holds (a deadline, not a sleep)."""
    end = time.monotonic() + 10.0
    while not check(value := probe()):
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached; last seen: {value!r}")
        await asyncio.sleep(0.005)
    return value
