"""The keyword prefilter skips only rules that cannot match: decisions are the same as
trying every rule in turn, for any rules and any text."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from router_helpers import decide, rules, text

from services.router.engine import CompiledRule, Facts, Ruleset
from services.router.folding import fold
from services.router.prefilter import KeywordIndex, Keywords
from services.router.sessions import EMPTY

# Few distinct characters, so that keywords overlap, nest and repeat as real ones do.
ALPHABET = "人工客服转aAＡbB1１ 　👍❤️"
# Words that fold to nothing are refused by the compiler (test_router_compiler.py).
words = st.text(alphabet=ALPHABET, min_size=1, max_size=4).filter(lambda w: fold(w) != "")
condition = st.one_of(
    st.builds(lambda ws: {"contains": ws}, st.lists(words, min_size=1, max_size=3)),
    st.builds(lambda ws: {"equals": ws}, st.lists(words, min_size=1, max_size=3)),
    st.builds(lambda ws: {"starts_with": ws}, st.lists(words, min_size=1, max_size=2)),
    st.builds(lambda w: {"regex": w}, st.sampled_from(["^人", "a+", "[12]$", "服.*转"])),
    st.builds(
        lambda a, b: {"contains": a, "regex": b},
        st.lists(words, min_size=1, max_size=2),
        st.sampled_from(["工", "b"]),
    ),
)
rule = st.tuples(condition, st.booleans(), st.booleans())


def document(specs: list[tuple[dict[str, object], bool, bool]]) -> str:
    lines = ["rules:"]
    for i, (spec, folded, cont) in enumerate(specs):
        match = {"text": {**spec, "fold": folded}}
        lines.append(
            f"  - {{name: r{i}, match: {json.dumps(match, ensure_ascii=False)}, "
            f"tag: t{i}, continue: {'true' if cont else 'false'}}}"
        )
    return "\n".join(lines) + "\n"


def brute_force(rs: Ruleset, content: str) -> tuple[str, ...]:
    """The rules that act, trying each candidate in turn (no prefilter)."""
    event = text(content)
    facts = Facts(event, EMPTY, ts=float(event.create_time), zone=rs.zone)
    matched: list[str] = []
    for r in rs.candidates("text", ""):
        if r.test()(facts):
            matched.append(r.name)
            if not r.cont:
                return tuple(matched)
    return (*matched, "fallback")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(rule, min_size=1, max_size=12),
    st.lists(st.text(alphabet=ALPHABET, max_size=8), min_size=1, max_size=6),
)
def test_decisions_equal_trying_every_rule(
    specs: list[tuple[dict[str, object], bool, bool]], texts: list[str]
) -> None:
    rs = rules(document(specs), fallback="fallback: {ignore: true}\n")
    for content in texts:
        assert decide(rs, text(content)).matched == brute_force(rs, content), content


def test_the_index_calls_up_few_rules_for_a_long_file() -> None:
    keywords = [Keywords("contains", True, (f"关键词{i}号",)) for i in range(1000)]
    index = KeywordIndex([*keywords, None])
    called = index.positions("请问关键词998号在吗", "")
    assert {998, 1000} <= set(called)
    assert len(called) < 50  # a few dozen share a piece with it, not a thousand
    assert index.positions("没有关键词", "") == [1000]


def test_rules_without_keywords_are_always_tried() -> None:
    rs = rules(
        """\
        rules:
          - {name: pattern, match: {text: {regex: '^\\d+$'}}, reply: n}
          - {name: word, match: {text: {contains: 你好}}, reply: w}
          - {name: any, match: {type: text, first_contact_today: true}, reply: a}
        """
    )
    assert decide(rs, text("123")).rule == "pattern"
    assert decide(rs, text("你好呀")).rule == "word"
    assert decide(rs, text("随便")).rule == "any"


def test_a_compiled_rule_carries_its_keywords() -> None:
    rs = rules(
        """\
        rules:
          - {name: a, match: {text: {contains: [ＨＵＭＡＮ, 人工], regex: x}}, reply: r}
          - {name: b, match: {text: {equals: Hi, fold: false}}, reply: r}
          - {name: c, match: {text: {regex: x}}, reply: r}
          - {name: d, match: {type: text}, reply: r}
        """
    )
    found: dict[str, Keywords | None] = {r.name: r.keywords for r in rs.rules}
    assert found == {
        "a": Keywords("contains", True, ("human", "人工")),
        "b": Keywords("equals", False, ("Hi",)),
        "c": None,
        "d": None,
    }
    assert isinstance(rs.rules[0], CompiledRule)
