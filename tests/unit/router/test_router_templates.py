"""Reply templates: a fixed set of fields, nothing that runs code."""

from __future__ import annotations

from datetime import datetime

import pytest
from router_helpers import SHANGHAI, card, enter, image, text

from services.router.errors import SpecError
from services.router.templates import FIELDS, MAX_VALUE_CHARS, parse

AT = datetime(2026, 11, 25, 10, 30, tzinfo=SHANGHAI)


def test_fields_are_filled_from_the_event_and_the_time() -> None:
    t = parse("你说「{text}」于 {date} {time}")
    assert t.render(text("发货"), AT) == "你说「发货」于 2026-11-25 10:30"
    assert parse("{page_title} {page_path}").render(card("pages/goods/1"), AT) == (
        "红色卫衣 pages/goods/1"
    )
    assert parse("from {session_from}").render(enter("ad:1"), AT) == "from ad:1"


def test_fields_missing_from_this_kind_of_event_are_empty() -> None:
    assert parse("[{text}][{page_title}][{session_from}]").render(image(), AT) == "[][][]"


def test_a_template_without_fields_is_plain_text() -> None:
    t = parse("纯文本")
    assert t.fields == ()
    assert t.render(text("x"), AT) == "纯文本"


def test_doubled_braces_are_literal() -> None:
    assert parse("{{text}} {text}").render(text("hi"), AT) == "{text} hi"
    assert parse("}}{{").render(text("hi"), AT) == "}{"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{name}", "unknown template field `{name}`"),
        ("{text.__class__}", "unknown template field `{text.__class__}`"),
        ("{0}", "unknown template field `{0}`"),
        ("{text!r}", "unknown template field `{text!r}`"),
        ("{text:>99999}", "unknown template field `{text:>99999}`"),
        ("{__import__('os')}", "unknown template field"),
        ("hello {text", "unclosed `{` at character 7"),
        ("a } b", "unmatched `}` at character 3"),
    ],
)
def test_anything_but_a_known_name_is_refused(template: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse(template)
    assert message in err.value.message


def test_user_text_is_inserted_literally_never_expanded() -> None:
    """A user who types template syntax gets it back as text, not evaluated."""
    hostile = "{date} {{text}} {0.__class__} %s ${x}"
    assert parse("「{text}」").render(text(hostile), AT) == f"「{hostile}」"


def test_values_are_cut_so_an_echo_cannot_exceed_the_text_limit() -> None:
    rendered = parse("{text}").render(text("长" * 5000), AT)
    assert rendered == "长" * MAX_VALUE_CHARS


def test_known_fields() -> None:
    assert set(FIELDS) == {"text", "session_from", "page_title", "page_path", "date", "time"}
