"""Topic matching of the memory twin: a table, and a property against a plain recursive
reading of AMQP's rule (the integration suite checks the table against RabbitMQ itself)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.common.bus.topic import matches, words


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.#", "a", True),
        ("#.b", "b", True),
        ("a.*.c", "a.c", False),
        ("*", "", False),
        ("#", "", True),
        ("a.*.c", "a..c", True),
        ("*.*", "a.", True),
        ("a.#.b", "a.x.y.b", True),
        ("#.a.#", "b.b", False),
        ("", "", True),
    ],
)
def test_table(pattern: str, key: str, expected: bool) -> None:
    assert matches(pattern, key) is expected


def test_words_of_an_empty_key_are_none_and_a_trailing_dot_makes_an_empty_word() -> None:
    assert words("") == ()
    assert words("a.") == ("a", "")
    assert words(".") == ("", "")


def reference(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(reference(rest, key[i:]) for i in range(len(key) + 1))
    return bool(key) and head in ("*", key[0]) and reference(rest, key[1:])


word = st.sampled_from(["a", "b", ""])
token = st.sampled_from(["a", "b", "", "*", "#"])


@given(st.lists(token, max_size=6), st.lists(word, max_size=6))
def test_agrees_with_the_recursive_rule(pattern: list[str], key: list[str]) -> None:
    p, k = ".".join(pattern), ".".join(key)
    assert matches(p, k) == reference(words(p), words(k))
