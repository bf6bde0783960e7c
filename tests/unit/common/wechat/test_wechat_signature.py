"""Signatures: every vector of WECHAT.md §12, and constant-time verification."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wechat_vectors import (
    E1,
    E2,
    PLAIN_QUERY,
    REPLY_ENCRYPT,
    REPLY_NONCE,
    REPLY_SIGNATURE,
    REPLY_TIMESTAMP,
    S_MSG_SIGNATURE,
    S_NONCE,
    S_SIGNATURE,
    S_TIMESTAMP,
    S_TOKEN,
    SAFE_QUERY,
    TOKEN,
    URL_CHECK,
)

from libs.common.wechat.signature import sign, verify


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        pytest.param(
            (TOKEN, URL_CHECK["timestamp"], URL_CHECK["nonce"]),
            URL_CHECK["signature"],
            id="url-check",
        ),
        pytest.param(
            (TOKEN, PLAIN_QUERY["timestamp"], PLAIN_QUERY["nonce"]),
            PLAIN_QUERY["signature"],
            id="plain-post",
        ),
        pytest.param(
            (TOKEN, SAFE_QUERY["timestamp"], SAFE_QUERY["nonce"]),
            SAFE_QUERY["signature"],
            id="safe-post-signature",
        ),
        pytest.param(
            (TOKEN, SAFE_QUERY["timestamp"], SAFE_QUERY["nonce"], E1),
            SAFE_QUERY["msg_signature"],
            id="safe-post-msg-signature",
        ),
        pytest.param(
            (TOKEN, str(REPLY_TIMESTAMP), REPLY_NONCE, REPLY_ENCRYPT),
            REPLY_SIGNATURE,
            id="encrypted-reply",
        ),
        pytest.param((S_TOKEN, S_TIMESTAMP, S_NONCE), S_SIGNATURE, id="sample-signature"),
        pytest.param(
            (S_TOKEN, S_TIMESTAMP, S_NONCE, E2), S_MSG_SIGNATURE, id="sample-msg-signature"
        ),
        pytest.param(("123", "345"), "9f537aeb751ec72605f57f94a2f6dc3e3958e1dd", id="two-parts"),
        pytest.param(
            ("789", "456", "123"), "f7c3bc1d808e04732adf679965ccc34ca7ae3441", id="sorting"
        ),
    ],
)
def test_sign_matches_the_published_vectors(parts: tuple[str, ...], expected: str) -> None:
    assert sign(*parts) == expected
    assert verify(expected, *parts)


def test_the_order_of_the_parts_does_not_matter() -> None:
    parts = (TOKEN, SAFE_QUERY["timestamp"], SAFE_QUERY["nonce"], E1)
    assert {sign(*p) for p in itertools.permutations(parts)} == {SAFE_QUERY["msg_signature"]}


@given(st.lists(st.text(), min_size=1, max_size=5))
@settings(deadline=None)
def test_sorting_by_code_point_is_sorting_by_utf8_bytes(parts: list[str]) -> None:
    # WeChat sorts bytes; Python sorts code points: the two orders agree for UTF-8.
    by_bytes = b"".join(sorted(p.encode("utf-8", "surrogatepass") for p in parts))
    assert "".join(sorted(parts)).encode("utf-8", "surrogatepass") == by_bytes


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("", id="empty"),
        pytest.param(URL_CHECK["signature"].upper(), id="uppercase"),
        pytest.param(URL_CHECK["signature"][:-1] + "0", id="last-char"),
        pytest.param(URL_CHECK["signature"][:-1], id="truncated"),
        pytest.param(URL_CHECK["signature"] + "0", id="longer"),
        pytest.param("é" * 40, id="non-ascii"),
    ],
)
def test_verify_refuses_anything_else(signature: str) -> None:
    assert not verify(signature, TOKEN, URL_CHECK["timestamp"], URL_CHECK["nonce"])


def test_verify_refuses_the_right_signature_for_other_parts() -> None:
    assert not verify(URL_CHECK["signature"], "AAAAB", URL_CHECK["timestamp"], URL_CHECK["nonce"])
