"""Reading YAML: structural mistakes are reported with their line and column."""

from __future__ import annotations

from pathlib import Path

import pytest
from router_helpers import only_problem, problems

from services.router import loader
from services.router.errors import RulesError


def where(document: str) -> tuple[int, int, str]:
    p = only_problem(document)
    return (p.line, p.column, p.message)


def test_yaml_syntax_error_points_at_the_place() -> None:
    line, column, message = where("rules:\n  - name: a\n    reply: [unclosed\nfallback: {}\n")
    assert message.startswith("invalid YAML:")
    assert (line, column) >= (3, 1)


def test_bad_indentation_is_a_yaml_error_with_position() -> None:
    line, _, message = where("fallback:\n  reply: hi\n ignore: true\n")
    assert message.startswith("invalid YAML")
    assert line == 3


def test_duplicate_key_points_at_the_second_occurrence() -> None:
    assert where("fallback:\n  reply: a\n  reply: b\n") == (3, 3, "duplicate key `reply`")


def test_unknown_key_points_at_the_key() -> None:
    document = """\
        rules:
          - name: a
            match:
              txt: hello
            reply: hi
        fallback:
          reply: ok
        """
    assert where(document) == (4, 7, "unknown key `txt`")


def test_missing_fallback_is_reported_at_the_top() -> None:
    line, column, message = where("rules: []\n")
    assert message == "missing required key `fallback`"
    assert (line, column) == (1, 1)


def test_missing_rule_name_points_at_the_rule() -> None:
    document = "rules:\n  - reply: hi\nfallback:\n  reply: ok\n"
    assert where(document) == (2, 5, "missing required key `name`")


def test_wrong_type_points_at_the_value() -> None:
    document = "rules:\n  - name: a\n    transfer: maybe\n    reply: x\nfallback: {reply: ok}\n"
    line, column, message = where(document)
    assert (line, column) == (3, 15)
    assert "bool" in message


def test_rules_must_be_a_list() -> None:
    line, column, message = where("rules:\n  name: a\nfallback: {reply: ok}\n")
    assert (line, column) == (2, 3)
    assert "a list" in message


def test_mistake_inside_named_hours_points_into_the_entry() -> None:
    document = (
        "hours:\n  office:\n    weekdays: mon\n    holidays: 2026-01-01\nfallback: {reply: ok}\n"
    )
    line, column, message = where(document)
    assert (line, column) == (4, 15)
    assert "a list" in message


def test_top_level_must_be_a_mapping() -> None:
    assert where("- a\n- b\n")[2] == "the file must be a mapping of keys"


def test_empty_file() -> None:
    assert where("")[2] == "the file is empty"
    assert where("# only a comment\n")[2] == "the file is empty"


def test_a_key_that_is_not_plain_text() -> None:
    _, _, message = where("? [a, b]\n: 1\nfallback: {reply: ok}\n")
    assert message == "a key must be plain text"


def test_not_utf8() -> None:
    with pytest.raises(RulesError) as err:
        loader.parse(b"fallback:\n  reply: \xff\xfe\xfa\n")
    assert "invalid YAML" in err.value.problems[0].message


def test_oversized_file_is_refused_before_parsing() -> None:
    with pytest.raises(RulesError, match="larger than"):
        loader.parse(b"#" * (loader._MAX_BYTES + 1))


def test_yaml_11_surprises_stay_text() -> None:
    """``no``, ``on`` and ``9:30`` are keywords a shop may use; they must stay strings."""
    rule_file, _ = loader.parse(
        "rules:\n  - name: a\n    match: {text: [no, on, yes, 9:30, 2026-10-01, 1e3]}\n"
        "    reply: x\nfallback: {reply: ok}\n"
    )
    match = rule_file.rules[0].match
    assert match is not None
    assert match.text == ["no", "on", "yes", "9:30", "2026-10-01", "1e3"]


def test_null_and_quoted_null() -> None:
    rule_file, _ = loader.parse("fallback:\n  reply: 'null'\n  tag: ~\n")
    assert rule_file.fallback.reply == "null"
    assert rule_file.fallback.tag is None


def test_missing_file_is_a_rules_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        loader.read(tmp_path / "nope.yaml")


def test_rendered_problem_names_file_line_column_and_path() -> None:
    (p,) = problems(
        "rules:\n  - name: a\n    match: {txt: x}\n    reply: y\nfallback: {reply: ok}\n"
    )
    assert p.render("shop.yaml") == "shop.yaml:3:13: unknown key `txt` (at rules[0].match.txt)"


def test_every_structural_mistake_is_reported_in_one_run() -> None:
    document = """\
        version: 1
        colour: blue
        hours:
          office:
            weekdays: mon
            holidays: 2026-01-01
        rules:
          - name: a
            match:
              txt: hello
            replay: hi
          - name: b
            transfer: maybe
            reply:
              - image: {assett: size-chart}
          - reply: no name
          - name: d
            reply: fine
        fallback:
          reply: ok
          tag: [x]
          ignroe: true
        """
    found = [(p.line, p.column, p.message) for p in problems(document)]
    assert [(line, message) for line, _, message in found] == [
        (2, "unknown key `colour`"),
        (6, found[1][2]),
        (10, "unknown key `txt`"),
        (11, "unknown key `replay`"),
        (13, found[4][2]),
        (15, "unknown key `assett`"),
        (16, "missing required key `name`"),
        (22, "unknown key `ignroe`"),
    ]
    assert "a list" in found[1][2]
    assert "bool" in found[4][2]


def test_a_required_key_taken_away_is_not_reported_twice() -> None:
    document = "rules:\n  - name: [a, b]\n    reply: hi\nfallback: {reply: ok}\n"
    (only,) = problems(document)
    assert (only.line, only.column) == (2, 11)
    assert "str" in only.message
