"""What a rules file means: every mistake is reported, each with its place."""

from __future__ import annotations

import pytest
from router_helpers import FALLBACK, only_problem, problems, rules

from services.router.compiler import TEXT_LIMIT_BYTES, duration_s
from services.router.errors import SpecError


def rule(body: str) -> str:
    """One rule named ``r`` with ``body`` (YAML lines, 4-space indented) and a fallback."""
    return "rules:\n  - name: r\n" + body + FALLBACK


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    document = """\
        version: 2
        timezone: Mars/Olympus
        rules:
          - name: a
            match: {type: txt}
            reply: hi
          - name: a
            reply: x
            match: {text: {regex: "("}}
        fallback: {transfer: true}
        """
    found = problems(document)
    assert [(p.line, p.message.split(" ")[0]) for p in found] == [
        (1, "unsupported"),
        (2, "unknown"),
        (5, "unknown"),
        (7, "rule"),
        (9, "invalid"),
        (10, "the"),
    ]


@pytest.mark.parametrize(
    ("body", "line", "column", "message"),
    [
        ("    match: {type: [text, txt]}\n    reply: x\n", 3, 26, "unknown message type `txt`"),
        ("    match: {type: []}\n    reply: x\n", 3, 19, "an empty list matches nothing"),
        ("    match: {event: 'a.b'}\n    reply: x\n", 3, 20, "`a.b` is not an event name"),
        ("    match: {type: image, text: hi}\n    reply: x\n", 3, 32, "`text` applies to text"),
        (
            "    match: {event: other, session_from: x}\n    reply: x\n",
            3,
            41,
            "`session_from` applies to the enter-session event, which this rule's `event`",
        ),
        (
            "    match: {type: text, page_path: x}\n    reply: x\n",
            3,
            36,
            "`page_path` applies to mini program cards",
        ),
        ("    match: {text: {contains: ''}}\n    reply: x\n", 3, 30, "an empty keyword matches"),
        ("    match: {text: {fold: false}}\n    reply: x\n", 3, 19, "give at least one of"),
        (
            "    match: {text: {contains: [hi, '\u3000\ufe0f']}}\n    reply: x\n",
            3,
            35,
            "is empty once folded",
        ),
        ("    match: {text: {regex: '(a'}}\n    reply: x\n", 3, 27, "invalid regular expression"),
        ("    match: {hours: office}\n    reply: x\n", 3, 20, "no business hours named"),
        (
            "    match: {session: {transferred_within: soon}}\n    reply: x\n",
            3,
            43,
            "`soon` is not a duration",
        ),
        ("    match: {users: ['']}\n    reply: x\n", 3, 21, "an empty openid matches"),
        ("    match: {type: text}\n", 2, 5, "this does nothing"),
        ("    ignore: true\n    reply: x\n", 3, 13, "`ignore: true` means do nothing"),
        ("    match: {type: text}\n    ignore: true\n    continue: true\n", 5, 15, "`ignore` with"),
        ("    reply: x\n    transfer: true\n", 4, 15, "only user messages can be transferred"),
        (
            "    match: {type: [text, event]}\n    transfer: true\n",
            4,
            15,
            "only user messages can be transferred",
        ),
        (
            "    reply: [{text: a, image: b}]\n",
            3,
            13,
            "a reply item needs exactly one of `text` or `image` or `link` or `miniprogram`, "
            "not `text`, `image`",
        ),
        ("    reply: [{}]\n", 3, 13, "a reply item needs exactly one of"),
        ("    reply: []\n", 3, 12, "an empty reply sends nothing"),
        ("    reply: '  '\n", 3, 12, "a text reply must not be empty"),
        (
            "    reply: [{image: {}}]\n",
            3,
            21,
            "an image needs exactly one of `asset` or `media_id`",
        ),
        (
            "    reply: [{link: {title: t, url: 'ftp://x'}}]\n",
            3,
            36,
            "`url` must be an http(s) URL",
        ),
        (
            "    reply: [{miniprogram: {title: t, pagepath: p}}]\n",
            3,
            27,
            "a mini program card needs exactly one of",
        ),
        ("    reply: 'hi {name}'\n", 3, 12, "unknown template field `{name}`"),
        ("    extension: 'bad topic'\n", 3, 16, "extension topic `bad topic`"),
        ("    tag: ''\n", 3, 10, "a tag must not be empty"),
    ],
)
def test_rule_mistakes_point_at_their_place(
    body: str, line: int, column: int, message: str
) -> None:
    p = only_problem(rule(body))
    assert message in p.message
    assert (p.line, p.column) == (line, column)


def test_a_text_reply_too_long_for_wechat() -> None:
    p = only_problem(rule(f"    reply: {'字' * (TEXT_LIMIT_BYTES // 3 + 1)}\n"))
    assert "longer than 2048 bytes" in p.message


def test_duplicate_rule_name_names_the_first_line() -> None:
    document = "rules:\n  - {name: a, reply: x, match: {type: text}}\n  - {name: a, reply: y}\n"
    p = only_problem(document + FALLBACK)
    assert p.message == "rule name `a` is already used on line 2"
    assert (p.line, p.column) == (3, 12)


def test_a_catch_all_rule_hides_the_rules_after_it() -> None:
    document = "rules:\n  - {name: all, reply: x}\n  - {name: later, reply: y}\n" + FALLBACK
    p = only_problem(document)
    assert "rule `all` matches every event, so this rule can never match" in p.message
    assert p.line == 3


def test_a_catch_all_with_continue_hides_nothing() -> None:
    rs = rules(
        """\
        rules:
          - {name: all, tag: seen, continue: true}
          - {name: later, reply: y}
        """
    )
    assert [r.name for r in rs.rules] == ["all", "later"]


def test_disabled_rules_are_checked_but_not_used() -> None:
    assert (
        "unknown message type"
        in only_problem(rule("    enabled: false\n    match: {type: nope}\n    reply: x\n")).message
    )
    rs = rules("rules:\n  - {name: off, enabled: false, reply: x}\n  - {name: on, reply: y}\n")
    assert [r.name for r in rs.rules] == ["on"]


def test_fallback_cannot_transfer() -> None:
    p = only_problem("fallback:\n  reply: x\n  transfer: true\n")
    assert "the fallback also answers events" in p.message
    assert (p.line, p.column) == (3, 13)


def test_fallback_must_do_something() -> None:
    p = only_problem("fallback: {}\n")
    assert "this does nothing" in p.message


@pytest.mark.parametrize(
    ("hours", "line", "column", "message"),
    [
        ("{weekdays: [mon, funday]}", 3, 28, "unknown weekday `funday`"),
        ("{weekdays: fri-mon}", 3, 22, "runs backwards"),
        ("{ranges: ['9-18']}", 3, 21, "is not HH:MM-HH:MM"),
        ("{ranges: ['18:00-09:00']}", 3, 21, "split a night shift in two"),
        ("{ranges: ['09:00-24:30']}", 3, 21, "impossible time"),
        ("{holidays: [2026-13-01]}", 3, 23, "is not a date"),
        ("{timezone: Nowhere/Land}", 3, 22, "unknown time zone `Nowhere/Land`"),
    ],
)
def test_hours_mistakes_point_at_their_place(
    hours: str, line: int, column: int, message: str
) -> None:
    document = f"timezone: Asia/Shanghai\nhours:\n  office: {hours}\n" + FALLBACK
    p = only_problem(document)
    assert message in p.message
    assert (p.line, p.column) == (line, column)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1.5d", 129600.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "-5m", "5 minutes", "0s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(SpecError):
        duration_s(text)


def test_rule_names_are_bounded_and_printable() -> None:
    assert (
        "longer than 64" in only_problem(rule("").replace("name: r", "name: " + "x" * 65)).message
    )
    assert (
        "must not be empty"
        in only_problem("rules:\n  - {name: ' ', reply: x}\n" + FALLBACK).message
    )


def test_shipped_example_compiles() -> None:
    from pathlib import Path

    from services.router.compiler import compile_file

    rs = compile_file(Path(__file__).parents[3] / "examples" / "rules.yaml")
    assert len(rs) > 5
