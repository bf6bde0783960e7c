"""Matching: which rule acts for an event, and what the decision says."""

from __future__ import annotations

from datetime import datetime

import pytest
from router_helpers import (
    SHANGHAI,
    WEDNESDAY_MORNING,
    card,
    decide,
    enter,
    image,
    other_event,
    other_message,
    rules,
    text,
)

from libs.common.schemas import InboundEvent
from services.router.engine import CompiledRule, RuleActions, Ruleset
from services.router.sessions import Session


def rule_for(rs: Ruleset, event: InboundEvent, session: Session | None = None) -> str:
    return decide(rs, event, session or Session()).rule


KEYWORDS = rules(
    """\
    rules:
      - name: human
        match: {text: {contains: [人工, human]}}
        reply: 转接中
        transfer: true
      - name: exact
        match: {text: [发货, "Ｑ＆Ａ"]}
        reply: x
      - name: prefix
        match: {text: {starts_with: "#order"}}
        reply: x
      - name: number
        match: {text: {regex: '\\b\\d{6}\\b'}}
        reply: x
      - name: both
        match: {text: {contains: 红, regex: 'size|尺码'}}
        reply: x
      - name: emoji
        match: {text: {equals: ["❤️", "👍"]}}
        reply: x
      - name: raw
        match: {text: {equals: ABC, fold: false}}
        reply: x
    """
)


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        ("转人工", "human"),
        ("我要找人工客服！", "human"),
        ("HUMAN please", "human"),
        ("ＨＵＭＡＮ", "human"),  # full-width letters from a Chinese keyboard
        ("Ｈｕｍａｎ　ｐｌｅａｓｅ", "human"),  # full-width with an ideographic space
        ("发货", "exact"),
        ("  发货 ", "exact"),
        ("发货了吗", "fallback"),  # equals is exact
        ("q&a", "exact"),  # a full-width keyword folds like the text does
        ("#ORDER 42", "prefix"),
        ("＃order 42", "prefix"),
        ("my order is 123456 thanks", "number"),
        ("my order is １２３４５６", "number"),  # full-width digits
        ("1234567", "fallback"),
        ("红色 SIZE 有吗", "both"),
        ("红色", "fallback"),  # both conditions must hold
        ("❤", "emoji"),  # the presentation selector does not matter
        ("❤️", "emoji"),
        ("👍", "emoji"),
        ("👍🏻", "fallback"),  # a skin tone is a different emoji
        ("ABC", "raw"),
        ("abc", "fallback"),  # fold: false is exact about case
        ("", "fallback"),
    ],
)
def test_text_keywords(content: str, rule: str) -> None:
    assert rule_for(KEYWORDS, text(content)) == rule


def test_text_conditions_never_match_other_kinds() -> None:
    for event in (image(), card("pages/a"), enter(), other_event(), other_message()):
        assert rule_for(KEYWORDS, event) == "fallback"


def test_type_and_event() -> None:
    rs = rules(
        """\
        rules:
          - {name: image, match: {type: image}, reply: x}
          - {name: media, match: {type: [voice, video]}, reply: x}
          - {name: enter, match: {event: user_enter_tempsession}, reply: x}
          - {name: debug, match: {event: [debug_demo]}, reply: x}
          - {name: events, match: {type: event}, ignore: true}
        """
    )
    assert rule_for(rs, image()) == "image"
    assert rule_for(rs, other_message("voice")) == "media"
    assert rule_for(rs, enter()) == "enter"
    assert rule_for(rs, other_event("debug_demo")) == "debug"
    assert rule_for(rs, other_event("wxa_media_check")) == "events"
    assert rule_for(rs, text("hi")) == "fallback"


def test_session_from_and_page_path() -> None:
    rs = rules(
        """\
        rules:
          - {name: ad, match: {session_from: {starts_with: "ad:"}}, reply: x}
          - {name: goods, match: {page_path: {regex: '^pages/goods/\\d+'}}, reply: x}
        """
    )
    assert rule_for(rs, enter("ad:spring")) == "ad"
    assert rule_for(rs, enter("AD:spring")) == "ad"
    assert rule_for(rs, enter("home")) == "fallback"
    assert rule_for(rs, card("pages/goods/12?from=share")) == "goods"
    assert rule_for(rs, card("pages/cart/index")) == "fallback"
    assert rule_for(rs, text("ad:spring")) == "fallback"


HOURS = rules(
    """\
    timezone: Asia/Shanghai
    hours:
      office:
        weekdays: mon-fri
        ranges: ["09:00-12:00", "13:30-18:00"]
        holidays: [2026-10-01]
        workdays: [2026-09-27]
      utc-nights: {timezone: UTC, ranges: ["00:00-01:00"]}
    rules:
      - {name: open, match: {type: text, hours: office}, reply: x}
      - {name: night, match: {type: text, hours: utc-nights}, reply: x}
      - {name: closed, match: {type: text, outside_hours: office}, reply: x}
    """
)


@pytest.mark.parametrize(
    ("local", "rule"),
    [
        (datetime(2026, 11, 25, 9, 0), "open"),  # Wednesday, opening minute
        (datetime(2026, 11, 25, 11, 59), "open"),
        (datetime(2026, 11, 25, 12, 0), "closed"),  # lunch: end excluded
        (datetime(2026, 11, 25, 13, 30), "open"),
        (datetime(2026, 11, 25, 18, 0), "closed"),
        (datetime(2026, 11, 25, 8, 59), "night"),  # 00:59 UTC
        (datetime(2026, 11, 28, 10, 0), "closed"),  # Saturday
        (datetime(2026, 10, 1, 10, 0), "closed"),  # a Thursday, but a holiday
        (datetime(2026, 9, 27, 10, 0), "open"),  # a Sunday, but a make-up working day
    ],
)
def test_business_hours(local: datetime, rule: str) -> None:
    ts = local.replace(tzinfo=SHANGHAI).timestamp()
    assert rule_for(HOURS, text("hi", ts=ts)) == rule


def test_first_contact_today_uses_the_rules_time_zone() -> None:
    rs = rules(
        """\
        timezone: Asia/Shanghai
        rules:
          - {name: hello, match: {type: text, first_contact_today: true}, reply: 早}
          - {name: again, match: {type: text, first_contact_today: false}, reply: x}
        """
    )
    assert rule_for(rs, text("hi")) == "hello"
    assert rule_for(rs, text("hi"), Session(last_day="2026-11-24")) == "hello"
    assert rule_for(rs, text("hi"), Session(last_day="2026-11-25")) == "again"
    # 23:30 UTC on the 24th is already the 25th in Shanghai.
    late = datetime(2026, 11, 24, 23, 30, tzinfo=SHANGHAI).timestamp() + 8 * 3600
    assert decide(rs, text("hi", ts=late)).day == "2026-11-25"


def test_session_conditions() -> None:
    rs = rules(
        """\
        rules:
          - name: waiting
            match: {type: [text, image], session: {transferred_within: 30m}}
            transfer: true
          - {name: vip, match: {session: {tagged: [vip, gold]}}, reply: x}
          - {name: new, match: {session: {not_tagged: seen, not_transferred_within: 1d}}, reply: x}
        """
    )
    now = WEDNESDAY_MORNING
    assert rule_for(rs, text("hi"), Session(transferred_at=now - 29 * 60)) == "waiting"
    assert rule_for(rs, image(), Session(transferred_at=now - 60)) == "waiting"
    assert rule_for(rs, text("hi"), Session(transferred_at=now - 31 * 60, tags=("seen",))) == (
        "fallback"
    )
    assert rule_for(rs, enter(), Session(transferred_at=now - 60, tags=("gold",))) == "vip"
    assert rule_for(rs, text("hi")) == "new"
    assert rule_for(rs, text("hi"), Session(transferred_at=now - 3600)) == "fallback"


def test_openid_allow_and_deny_lists() -> None:
    rs = rules(
        """\
        rules:
          - {name: testers, match: {users: [o-alice, o-bob]}, reply: beta}
          - {name: not-blocked, match: {type: text, except_users: [o-spam]}, reply: x}
        """
    )
    assert rule_for(rs, text("x", openid="o-alice")) == "testers"
    assert rule_for(rs, text("x", openid="o-carol")) == "not-blocked"
    assert rule_for(rs, text("x", openid="o-spam")) == "fallback"


def test_first_match_wins_unless_it_continues() -> None:
    rs = rules(
        """\
        rules:
          - {name: tag-all, tag: seen, continue: true}
          - {name: typing, match: {type: text}, typing: true, extension: bot, continue: true}
          - {name: hello, match: {text: hi}, reply: [a, b]}
          - {name: never, match: {text: hi}, reply: c}
        """
    )
    d = decide(rs, text("hi"))
    assert d.rule == "hello"
    assert d.matched == ("tag-all", "typing", "hello")
    assert d.actions == ("typing", "reply", "tag", "extension")
    assert d.action == "typing"
    assert [p.proto.content for p in d.replies] == ["a", "b"]  # type: ignore[union-attr]
    assert (d.typing, d.tags, d.extensions) == (True, ("seen",), ("bot",))
    # The fallback ends a chain that found no rule to stop it.
    d = decide(rs, image())
    assert d.matched == ("tag-all", "fallback")
    assert d.actions == ("reply", "tag")


def test_transfer_leads_the_actions() -> None:
    rs = rules("rules:\n  - {name: h, match: {text: h}, reply: wait, transfer: true}\n")
    d = decide(rs, text("h"))
    assert (d.transfer, d.action, d.actions) == (True, "transfer", ("transfer", "reply"))
    assert d.session_change().transferred_at == WEDNESDAY_MORNING


def test_ignore() -> None:
    rs = rules("rules:\n  - {name: quiet, match: {type: event}, ignore: true}\n")
    d = decide(rs, enter())
    assert (d.rule, d.actions, d.replies, d.transfer) == ("quiet", ("ignore",), (), False)


def test_an_event_is_never_transferred_even_by_a_rule_that_says_so() -> None:
    """The compiler refuses such rules; the engine holds the line on its own as well."""
    rogue = CompiledRule(name="rogue", actions=RuleActions(transfer=True))
    fallback = CompiledRule(name="fallback", actions=RuleActions(tags=("x",)))
    rs = Ruleset((rogue,), fallback, zone=SHANGHAI)
    assert decide(rs, text("hi")).transfer is True
    for event in (enter(), other_event()):
        d = decide(rs, event)
        assert d.transfer is False
        assert d.actions == ("ignore",)


def test_candidate_index_is_per_kind_and_bounded() -> None:
    rs = rules(
        """\
        rules:
          - {name: t, match: {type: text}, reply: x}
          - {name: e, match: {event: a}, reply: x}
        """
    )
    assert [r.name for r in rs.candidates("text", "")] == ["t"]
    assert [r.name for r in rs.candidates("event", "a")] == ["e"]
    assert rs.candidates("event", "b") == ()
    for i in range(400):
        rs.candidates("event", f"e{i}")
    assert len(rs._by_kind) <= 256
