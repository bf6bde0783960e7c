"""Check what a rules file means and compile it into a :class:`Ruleset`.

Every mistake found is collected (not just the first) with its place in the file. The
checks that need the whole file live here: unique rule names, known business hours, no
transfer where an event could match, no rule that hides the rules after it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Final
from zoneinfo import ZoneInfo

import msgspec

from libs.common.schemas import Command, SendImage, SendLink, SendMiniProgramPage, SendText
from services.router import loader
from services.router.engine import (
    ENTER_SESSION,
    CompiledRule,
    Condition,
    Facts,
    ReplyPart,
    RuleActions,
    Ruleset,
)
from services.router.errors import Path, Problem, RulesError, SpecError, within
from services.router.folding import fold
from services.router.hours import BusinessHours, compile_hours, zone
from services.router.prefilter import KeywordMode, Keywords
from services.router.rulefile import (
    Actions,
    CardSpec,
    ImageRef,
    LinkSpec,
    Match,
    ReplyItem,
    Rule,
    RuleFile,
    SessionMatch,
    StrOrList,
    TextCondition,
    TextMatch,
)
from services.router.templates import parse as parse_template

MESSAGE_TYPES: Final = frozenset(
    # What mini program customer service pushes, then WeChat's other MsgTypes (which arrive
    # as msg.<type> if WeChat ever sends them here).
    {"text", "image", "miniprogrampage", "voice", "video", "shortvideo", "location", "link", "file"}
)
ALL_KINDS: Final = MESSAGE_TYPES | {"event"}
TEXT_LIMIT_BYTES: Final = 2048
"""WeChat refuses longer texts (45002); a reply that cannot be sent is a mistake in the file."""
_WORD = re.compile(r"^[A-Za-z0-9_\-]+$")
_TOPIC = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NAME_LIMIT = 64


def as_list(value: StrOrList | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def duration_s(value: str | float) -> float:
    if isinstance(value, float | int):
        seconds = float(value)
    else:
        m = _DURATION.match(value)
        if not m:
            raise SpecError(f"`{value}` is not a duration: write 90s, 30m, 2h, 1d or seconds")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise SpecError("a duration must be longer than zero")
    return seconds


def _label(value: str, what: str) -> str:
    """Names that end up in metrics, keys and routing: short, printable, not blank."""
    if not value.strip():
        raise SpecError(f"{what} must not be empty")
    if len(value) > _NAME_LIMIT:
        raise SpecError(f"{what} is longer than {_NAME_LIMIT} characters")
    if any(not c.isprintable() for c in value):
        raise SpecError(f"{what} contains control characters")
    return value


# --- conditions -------------------------------------------------------------------------------


def _words(items: list[str], what: str, norm: Callable[[str], str] = str) -> list[str]:
    out = []
    for i, item in enumerate(items):
        if not item:
            raise SpecError(f"an empty {what} matches everything; remove it", (i,))
        word = norm(item)
        if not word:
            raise SpecError(
                f"the {what} {item!r} is empty once folded (only spaces or invisible "
                "characters) and would match everything; remove it or set `fold: false`",
                (i,),
            )
        out.append(word)
    return out


def text_matcher(spec: TextCondition) -> Callable[[str], bool]:
    """A predicate over the (folded, when ``fold``) text; every given key must hold."""
    if not isinstance(spec, TextMatch):
        spec = TextMatch(equals=spec)
    norm: Callable[[str], str] = fold if spec.fold else str
    checks: list[Callable[[str], bool]] = []
    for key in ("equals", "contains", "starts_with", "regex"):
        value = getattr(spec, key)
        if value is None:
            continue
        with within(key):
            items = as_list(value)
            if not items:
                raise SpecError("an empty list matches nothing")
            checks.append(_text_check(key, items, norm, spec.fold))
    if not checks:
        raise SpecError("give at least one of equals, contains, starts_with, regex")
    if len(checks) == 1:
        return checks[0]
    all_checks = tuple(checks)
    return lambda t: all(c(t) for c in all_checks)


def _text_check(
    key: str, items: list[str], norm: Callable[[str], str], folded: bool
) -> Callable[[str], bool]:
    if key == "regex":
        searches = []
        for i, pattern in enumerate(_words(items, "pattern")):
            try:
                searches.append(re.compile(pattern, re.IGNORECASE if folded else 0).search)
            except re.error as exc:
                raise SpecError(f"invalid regular expression: {exc}", (i,)) from None
        patterns = tuple(searches)
        return lambda t: any(search(t) is not None for search in patterns)
    words = _words(items, "keyword", norm)
    if key == "equals":
        exact = frozenset(words)
        return lambda t: t in exact
    if key == "contains":
        parts = tuple(words)
        return lambda t: any(p in t for p in parts)
    prefixes = tuple(words)
    return lambda t: t.startswith(prefixes)


def keywords_of(spec: TextCondition) -> Keywords | None:
    """What the text must contain for ``spec`` to hold, for the prefilter (None: a regex only)."""
    if not isinstance(spec, TextMatch):
        spec = TextMatch(equals=spec)
    norm: Callable[[str], str] = fold if spec.fold else str
    modes: tuple[KeywordMode, ...] = ("equals", "contains", "starts_with")
    for mode in modes:
        words = as_list(getattr(spec, mode))
        if words:
            return Keywords(mode, spec.fold, tuple(dict.fromkeys(norm(w) for w in words)))
    return None


def _text_condition(source: str, spec: TextCondition) -> Condition:
    match = text_matcher(spec)
    folded = spec.fold if isinstance(spec, TextMatch) else True

    def check(facts: Facts) -> bool:
        text = facts.text_of(source, folded)
        return text is not None and match(text)

    return check


def _hours_condition(hours: BusinessHours, want_open: bool) -> Condition:
    return lambda facts: hours.is_open(facts.at) is want_open


def _session_conditions(spec: SessionMatch) -> list[Condition]:
    out: list[Condition] = []
    if spec.transferred_within is not None:
        with within("transferred_within"):
            within_s = duration_s(spec.transferred_within)

        def recent(facts: Facts) -> bool:
            at = facts.session.transferred_at
            return at is not None and facts.ts - at < within_s

        out.append(recent)
    if spec.not_transferred_within is not None:
        with within("not_transferred_within"):
            quiet_s = duration_s(spec.not_transferred_within)

        def quiet(facts: Facts) -> bool:
            at = facts.session.transferred_at
            return at is None or facts.ts - at >= quiet_s

        out.append(quiet)
    if spec.tagged is not None:
        with within("tagged"):
            wanted = frozenset(_label(t, "a tag") for t in as_list(spec.tagged))
        out.append(lambda facts: not wanted.isdisjoint(facts.session.tags))
    if spec.not_tagged is not None:
        with within("not_tagged"):
            unwanted = frozenset(_label(t, "a tag") for t in as_list(spec.not_tagged))
        out.append(lambda facts: unwanted.isdisjoint(facts.session.tags))
    return out


class _Scope:
    """The kinds of event a match can admit, narrowed by each condition that implies one."""

    def __init__(self) -> None:
        self.kinds: frozenset[str] | None = None
        self.events: frozenset[str] | None = None

    def narrow(self, kinds: frozenset[str], why: str) -> None:
        narrowed = kinds if self.kinds is None else self.kinds & kinds
        if not narrowed:
            raise SpecError(
                f"{why}, which this rule's other conditions exclude: it can never match"
            )
        self.kinds = narrowed


class _Matched(msgspec.Struct, frozen=True, kw_only=True):
    kinds: frozenset[str] | None = None
    events: frozenset[str] | None = None
    conditions: tuple[Condition, ...] = ()
    keywords: Keywords | None = None


def _match(
    spec: Match, hours: dict[str, BusinessHours], problems: list[tuple[str, Path]]
) -> _Matched:
    scope = _Scope()
    conditions: list[Condition] = []
    if spec.type is not None:
        with within("type"):
            types = as_list(spec.type)
            for i, t in enumerate(types):
                if t not in ALL_KINDS:
                    known = ", ".join(sorted(ALL_KINDS))
                    raise SpecError(f"unknown message type `{t}`; known: {known}", (i,))
            if not types:
                raise SpecError("an empty list matches nothing")
            scope.kinds = frozenset(types)
    if spec.event is not None:
        with within("event"):
            names = as_list(spec.event)
            for i, name in enumerate(names):
                if not _WORD.match(name):
                    raise SpecError(f"`{name}` is not an event name", (i,))
            if not names:
                raise SpecError("an empty list matches nothing")
            scope.narrow(frozenset({"event"}), "`event` applies to events")
            scope.events = frozenset(names)
    for source, kind, why in (
        ("text", "text", "`text` applies to text messages"),
        ("page_path", "miniprogrampage", "`page_path` applies to mini program cards"),
        ("session_from", "event", "`session_from` applies to the enter-session event"),
    ):
        value = getattr(spec, source)
        if value is None:
            continue
        with within(source):
            scope.narrow(frozenset({kind}), why)
            if source == "session_from":
                if scope.events is not None and ENTER_SESSION not in scope.events:
                    raise SpecError(f"{why}, which this rule's `event` excludes")
                scope.events = frozenset({ENTER_SESSION})
            conditions.append(_text_condition(source, value))
    keywords = keywords_of(spec.text) if spec.text is not None else None
    for key, want_open in (("hours", True), ("outside_hours", False)):
        name = getattr(spec, key)
        if name is None:
            continue
        if name not in hours:
            defined = ", ".join(sorted(hours)) or "none are defined"
            problems.append((f"no business hours named `{name}` ({defined})", (key,)))
            continue
        conditions.append(_hours_condition(hours[name], want_open))
    if spec.first_contact_today is not None:
        first = spec.first_contact_today
        conditions.append(lambda facts: (facts.session.last_day != facts.day) is first)
    if spec.session is not None:
        with within("session"):
            conditions.extend(_session_conditions(spec.session))
    if spec.users is not None:
        with within("users"):
            allowed = frozenset(_words(spec.users, "openid"))
        conditions.append(lambda facts: facts.openid in allowed)
    if spec.except_users is not None:
        with within("except_users"):
            denied = frozenset(_words(spec.except_users, "openid"))
        conditions.append(lambda facts: facts.openid not in denied)
    return _Matched(
        kinds=scope.kinds, events=scope.events, conditions=tuple(conditions), keywords=keywords
    )


# --- actions ----------------------------------------------------------------------------------


def _text_part(text: str) -> ReplyPart:
    if not text.strip():
        raise SpecError("a text reply must not be empty")
    if len(text.encode()) > TEXT_LIMIT_BYTES:
        raise SpecError(f"a text reply longer than {TEXT_LIMIT_BYTES} bytes (WeChat refuses it)")
    template = parse_template(text)
    proto = SendText(content=text, appid="", openid="", correlation_id="")
    return ReplyPart(proto, template if template.fields else None)


def _one_of(spec: object, names: tuple[str, ...], what: str) -> str:
    given = [n for n in names if getattr(spec, n) is not None]
    if len(given) != 1:
        options = " or ".join(f"`{n}`" for n in names)
        found = ", ".join(f"`{n}`" for n in given)
        raise SpecError(
            f"{what} needs exactly one of {options}" + (f", not {found}" if found else "")
        )
    return given[0]


def _reply_part(item: str | ReplyItem) -> ReplyPart:
    if isinstance(item, str):
        return _text_part(item)
    kind = _one_of(item, ("text", "image", "link", "miniprogram"), "a reply item")
    with within(kind):
        proto: Command
        if item.text is not None:
            return _text_part(item.text)
        if item.image is not None:
            ref = ImageRef(asset=item.image) if isinstance(item.image, str) else item.image
            _one_of(ref, ("asset", "media_id"), "an image")
            with within("asset" if ref.asset is not None else "media_id"):
                _label(ref.asset or ref.media_id or "", "an image reference")
            proto = SendImage(
                asset=ref.asset, media_id=ref.media_id, appid="", openid="", correlation_id=""
            )
        elif item.link is not None:
            proto = _link(item.link)
        else:
            assert item.miniprogram is not None
            proto = _card(item.miniprogram)
    return ReplyPart(proto)


def _link(spec: LinkSpec) -> Command:
    for key in ("title", "url"):
        if not getattr(spec, key).strip():
            raise SpecError(f"`{key}` must not be empty", (key,))
    for key in ("url", "thumb_url"):
        value = getattr(spec, key)
        if value and not value.startswith(("https://", "http://")):
            raise SpecError(f"`{key}` must be an http(s) URL", (key,))
    return SendLink(
        title=spec.title,
        description=spec.description,
        url=spec.url,
        thumb_url=spec.thumb_url,
        appid="",
        openid="",
        correlation_id="",
    )


def _card(spec: CardSpec) -> Command:
    for key in ("title", "pagepath"):
        if not getattr(spec, key).strip():
            raise SpecError(f"`{key}` must not be empty", (key,))
    thumb = _one_of(spec, ("thumb_asset", "thumb_media_id"), "a mini program card")
    with within(thumb):
        _label(getattr(spec, thumb), "the thumbnail")
    return SendMiniProgramPage(
        title=spec.title,
        pagepath=spec.pagepath,
        thumb_asset=spec.thumb_asset,
        thumb_media_id=spec.thumb_media_id,
        appid="",
        openid="",
        correlation_id="",
    )


def _actions(spec: Actions) -> RuleActions:
    replies: list[ReplyPart] = []
    if spec.reply is not None:
        with within("reply"):
            if isinstance(spec.reply, str):
                replies.append(_text_part(spec.reply))
            else:
                if not spec.reply:
                    raise SpecError("an empty reply sends nothing; remove it")
                for i, item in enumerate(spec.reply):
                    with within(i):
                        replies.append(_reply_part(item))
    with within("extension"):
        topics = as_list(spec.extension)
        for i, topic in enumerate(topics):
            if not _TOPIC.match(topic):
                raise SpecError(
                    f"extension topic `{topic}` must be words of letters, digits, _ or -, "
                    "joined by dots",
                    (i,),
                )
    with within("tag"):
        tags = [_label(t, "a tag") for t in as_list(spec.tag)]
    acts = RuleActions(
        transfer=spec.transfer,
        typing=spec.typing,
        replies=tuple(replies),
        tags=tuple(dict.fromkeys(tags)),
        extensions=tuple(dict.fromkeys(topics)),
    )
    does_something = acts.names != ("ignore",)
    if spec.ignore and does_something:
        raise SpecError(
            "`ignore: true` means do nothing: remove it or the other actions", ("ignore",)
        )
    if not spec.ignore and not does_something:
        raise SpecError(
            "this does nothing: give an action (reply, transfer, typing, extension, tag) "
            "or say `ignore: true`"
        )
    return acts


# --- the file ---------------------------------------------------------------------------------


def _rule(
    rule: Rule, hours: dict[str, BusinessHours], problems: list[tuple[str, Path]]
) -> CompiledRule:
    with within("name"):
        _label(rule.name, "a rule name")
    matched = _Matched()
    if rule.match is not None:
        with within("match"):
            scoped: list[tuple[str, Path]] = []
            matched = _match(rule.match, hours, scoped)
            problems.extend((msg, ("match", *path)) for msg, path in scoped)
    actions = _actions(rule)
    can_see_events = matched.kinds is None or "event" in matched.kinds
    if rule.transfer and can_see_events:
        raise SpecError(
            "only user messages can be transferred, and this rule can match events: "
            "add `type: [text, image, miniprogrampage]` (or a text condition) to its match",
            ("transfer",),
        )
    if rule.ignore and rule.continue_:
        raise SpecError("`ignore` with `continue` has no effect: remove one", ("continue",))
    return CompiledRule(
        name=rule.name,
        kinds=matched.kinds,
        events=matched.events,
        conditions=matched.conditions,
        keywords=matched.keywords,
        actions=actions,
        cont=rule.continue_,
    )


def build(
    rule_file: RuleFile,
    pos: loader.Positions,
    *,
    source: str = "<rules>",
    digest: str = "",
) -> Ruleset:
    """Compile a parsed file; raises :class:`RulesError` listing every mistake."""
    problems: list[Problem] = []

    def report(message: str, path: Path) -> None:
        problems.append(pos.problem(message, path))

    if rule_file.version != 1:
        report(f"unsupported version {rule_file.version}; this wxkf reads version 1", ("version",))
    try:
        default_zone = zone(rule_file.timezone)
    except SpecError as exc:
        report(exc.message, ("timezone",))
        default_zone = ZoneInfo("UTC")
    hours: dict[str, BusinessHours] = {}
    for name, spec in rule_file.hours.items():
        try:
            hours[name] = compile_hours(spec, default_zone)
        except SpecError as exc:
            report(exc.message, ("hours", name, *exc.path))

    compiled: list[CompiledRule] = []
    first_line: dict[str, int] = {}
    catch_all: str | None = None
    for i, rule in enumerate(rule_file.rules):
        path: Path = ("rules", i)
        line = pos.at(path)[0]
        if rule.name in first_line:
            report(
                f"rule name `{rule.name}` is already used on line {first_line[rule.name]}",
                (*path, "name"),
            )
        first_line.setdefault(rule.name, line)
        scoped: list[tuple[str, Path]] = []
        try:
            built = _rule(rule, hours, scoped)
        except SpecError as exc:
            report(exc.message, (*path, *exc.path))
            continue
        finally:
            for msg, sub in scoped:
                report(msg, (*path, *sub))
        if not rule.enabled:
            continue
        if catch_all is not None:
            report(
                f"rule `{catch_all}` matches every event, so this rule can never match: "
                "move it last or put its actions under `fallback:`",
                path,
            )
            catch_all = None
        if not built.conditions and built.kinds is None and built.events is None and not built.cont:
            catch_all = rule.name
        compiled.append(msgspec.structs.replace(built, line=line))

    fallback: CompiledRule | None = None
    try:
        with within("fallback"):
            if rule_file.fallback.transfer:
                raise SpecError(
                    "the fallback also answers events, which can never be transferred: add a "
                    "rule with `type: [text, image, miniprogrampage]` and `transfer: true` "
                    "before it",
                    ("transfer",),
                )
            fallback = CompiledRule(
                name="fallback", line=pos.at(("fallback",))[0], actions=_actions(rule_file.fallback)
            )
    except SpecError as exc:
        report(exc.message, exc.path)

    if problems or fallback is None:
        problems.sort(key=lambda p: (p.line, p.column))
        raise RulesError(source, problems)
    return Ruleset(tuple(compiled), fallback, zone=default_zone, source=source, digest=digest)


def compile_text(text: str | bytes, *, source: str = "<rules>") -> Ruleset:
    """Parse, check and compile a rules document."""
    data = text.encode() if isinstance(text, str) else text
    rule_file, pos = loader.parse(data, source=source)
    return build(rule_file, pos, source=source, digest=hashlib.sha256(data).hexdigest())


def compile_file(path: str | FsPath) -> Ruleset:
    return compile_text(loader.read(path), source=str(path))
