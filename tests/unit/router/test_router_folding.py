"""Folding text so the keyboard's width and case do not matter."""

from __future__ import annotations

import pytest

from services.router.folding import fold


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("ＨＵＭＡＮ", "human"),
        ("Ｑ＆Ａ！", "q&a!"),
        ("１２３４５６", "123456"),
        ("转　人工", "转 人工"),  # ideographic space
        ("  转人工 \n", "转人工"),
        ("a \t\n b", "a b"),
        ("❤️", "❤"),
        ("👍🏻", "👍🏻"),
        ("ﾆｭｰｽ", "ニュース"),  # half-width katakana become full-width
        ("Straße", "strasse"),
        ("人工客服", "人工客服"),
        ("", ""),
    ],
)
def test_fold(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_fold_is_idempotent() -> None:
    for s in ("ＨＵＭＡＮ　ｐｌｅａｓｅ", "❤️👍🏻", "转人工！"):
        assert fold(fold(s)) == fold(s)
