"""The compiled rules and the decision: which rules match an event and what they do.

Everything here is pure and held in memory: :meth:`Ruleset.decide` reads the event, the
user's session and the clock, and touches no I/O, so the transfer answer costs microseconds.
The compiler (compiler.py) builds a :class:`Ruleset` from a checked rules file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

import msgspec

from libs.common.schemas import (
    Command,
    DecisionAction,
    ImageReceived,
    InboundEvent,
    MiniProgramPageReceived,
    OtherEventReceived,
    OtherMessageReceived,
    SessionEntered,
    TextReceived,
    UserMessage,
)
from services.router.folding import fold
from services.router.prefilter import KeywordIndex, Keywords
from services.router.sessions import Session, SessionChange
from services.router.templates import Template

ENTER_SESSION: Final = "user_enter_tempsession"


class Facts:
    """What the conditions of the rules read about one event, each derived once."""

    __slots__ = ("_folded", "at", "day", "event", "event_name", "kind", "openid", "session", "ts")

    def __init__(self, event: InboundEvent, session: Session, *, ts: float, zone: ZoneInfo):
        self.event = event
        self.session = session
        self.openid = event.openid
        self.ts = ts
        self.at = datetime.fromtimestamp(ts, zone)
        self.day = self.at.date().isoformat()
        self.kind, self.event_name = kind_of(event)
        self._folded: dict[str, str] = {}

    def text_of(self, source: str, folded: bool) -> str | None:
        """The text a text condition reads (``text``, ``session_from``, ``page_path``)."""
        event = self.event
        if source == "text":
            raw = event.content if isinstance(event, TextReceived) else None
        elif source == "session_from":
            raw = event.session_from if isinstance(event, SessionEntered) else None
        else:
            raw = event.page_path if isinstance(event, MiniProgramPageReceived) else None
        if raw is None or not folded:
            return raw
        cached = self._folded.get(source)
        if cached is None:
            cached = self._folded[source] = fold(raw)
        return cached


Condition = Callable[[Facts], bool]


def kind_of(event: InboundEvent) -> tuple[str, str]:
    """(message type, event name): ("text", "") or ("event", "user_enter_tempsession")."""
    if isinstance(event, TextReceived):
        return ("text", "")
    if isinstance(event, ImageReceived):
        return ("image", "")
    if isinstance(event, MiniProgramPageReceived):
        return ("miniprogrampage", "")
    if isinstance(event, OtherMessageReceived):
        return (event.msg_type, "")
    if isinstance(event, SessionEntered):
        return ("event", ENTER_SESSION)
    if isinstance(event, OtherEventReceived):
        return ("event", event.event)
    raise TypeError(f"not an inbound event: {type(event).__name__}")  # pragma: no cover


class ReplyPart(msgspec.Struct, frozen=True):
    """One message of a reply: a command with an empty envelope, and its text template."""

    proto: Command
    template: Template | None = None


ACTION_ORDER: Final[tuple[DecisionAction, ...]] = (
    "transfer",
    "typing",
    "reply",
    "tag",
    "extension",
    "ignore",
)


class RuleActions(msgspec.Struct, frozen=True, kw_only=True):
    transfer: bool = False
    typing: bool = False
    replies: tuple[ReplyPart, ...] = ()
    tags: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[DecisionAction, ...]:
        present = {
            "transfer": self.transfer,
            "typing": self.typing,
            "reply": bool(self.replies),
            "tag": bool(self.tags),
            "extension": bool(self.extensions),
        }
        names = tuple(a for a in ACTION_ORDER if present.get(a))
        return names or ("ignore",)


class CompiledRule(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    line: int = 0
    kinds: frozenset[str] | None = None
    """Message types it can match (None: any)."""
    events: frozenset[str] | None = None
    """Event names it can match (None: any)."""
    conditions: tuple[Condition, ...] = ()
    keywords: Keywords | None = None
    """What the text must contain for the text condition to hold (the prefilter files it)."""
    actions: RuleActions
    cont: bool = False

    def test(self) -> Condition:
        """All the conditions as one call."""
        conditions = self.conditions
        if not conditions:
            return _always
        if len(conditions) == 1:
            return conditions[0]
        return lambda facts: all(check(facts) for check in conditions)

    def admits(self, kind: str, event_name: str) -> bool:
        return (self.kinds is None or kind in self.kinds) and (
            self.events is None or event_name in self.events
        )


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    rule: str
    """The rule that ended the search (the fallback when no rule did)."""
    matched: tuple[str, ...]
    """Every rule that acted, in order (rules with ``continue`` and the last one)."""
    transfer: bool
    actions: tuple[DecisionAction, ...]
    typing: bool
    replies: tuple[ReplyPart, ...]
    tags: tuple[str, ...]
    extensions: tuple[str, ...]
    ts: float
    """The time the rules read (the event's CreateTime), unix seconds."""
    at: datetime
    """The same time in the rules' zone (templates print it)."""
    day: str

    @property
    def action(self) -> DecisionAction:
        """The leading action: transfer if any, else the first action."""
        return self.actions[0]

    def session_change(self) -> SessionChange:
        return SessionChange(
            transferred_at=self.ts if self.transfer else None, day=self.day, add_tags=self.tags
        )


_CACHE_LIMIT: Final = 256


def _always(facts: Facts) -> bool:
    return True


class _Plan(msgspec.Struct, frozen=True):
    """The candidate rules for one kind of event, each with its conditions as one call."""

    rules: tuple[CompiledRule, ...]
    tests: tuple[Condition, ...]
    index: KeywordIndex | None = None


class Ruleset:
    """The rules of one file, compiled; immutable once built, swapped whole on reload."""

    def __init__(
        self,
        rules: tuple[CompiledRule, ...],
        fallback: CompiledRule,
        *,
        zone: ZoneInfo,
        source: str = "<rules>",
        digest: str = "",
    ) -> None:
        self.rules = rules
        self.fallback = fallback
        self.zone = zone
        self.source = source
        self.digest = digest
        self._by_kind: dict[tuple[str, str], _Plan] = {}
        self._plan("text", "")  # built now, not on the first message

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, kind: str, event_name: str) -> tuple[CompiledRule, ...]:
        """The rules whose type and event admit this kind of event, in file order."""
        return self._plan(kind, event_name).rules

    def _plan(self, kind: str, event_name: str) -> _Plan:
        plan = self._by_kind.get((kind, event_name))
        if plan is None:
            rules = tuple(r for r in self.rules if r.admits(kind, event_name))
            index = KeywordIndex([r.keywords for r in rules]) if kind == "text" else None
            plan = _Plan(
                rules, tuple(r.test() for r in rules), index if index and index.useful else None
            )
            # The kinds come from WeChat's MsgType and Event: few, but not ours to bound.
            if len(self._by_kind) < _CACHE_LIMIT:
                self._by_kind[(kind, event_name)] = plan
        return plan

    def decide(self, event: InboundEvent, session: Session, *, ts: float) -> Decision:
        facts = Facts(event, session, ts=ts, zone=self.zone)
        plan = self._plan(facts.kind, facts.event_name)
        rules, tests = plan.rules, plan.tests
        if plan.index is not None and isinstance(event, TextReceived):
            folded = facts.text_of("text", True) or ""
            positions: Iterable[int] = plan.index.positions(folded, event.content)
        else:
            positions = range(len(rules))
        matched: list[CompiledRule] = []
        for i in positions:
            if tests[i](facts):
                matched.append(rules[i])
                if not rules[i].cont:
                    break
        else:
            matched.append(self.fallback)
        return _combine(matched, facts, user_message=isinstance(event, UserMessage))


def _combine(matched: list[CompiledRule], facts: Facts, *, user_message: bool) -> Decision:
    if len(matched) == 1:
        acts = matched[0].actions
    else:
        acts = RuleActions(
            transfer=any(r.actions.transfer for r in matched),
            typing=any(r.actions.typing for r in matched),
            replies=tuple(p for r in matched for p in r.actions.replies),
            tags=tuple(dict.fromkeys(t for r in matched for t in r.actions.tags)),
            extensions=tuple(dict.fromkeys(x for r in matched for x in r.actions.extensions)),
        )
    # The compiler refuses transfer in any rule that can match an event; this is the backstop.
    transfer = acts.transfer and user_message
    names = acts.names
    if acts.transfer and not transfer:
        names = names[1:] or ("ignore",)
    return Decision(
        rule=matched[-1].name,
        matched=tuple(r.name for r in matched),
        transfer=transfer,
        actions=names,
        typing=acts.typing,
        replies=acts.replies,
        tags=acts.tags,
        extensions=acts.extensions,
        ts=facts.ts,
        at=facts.at,
        day=facts.day,
    )
