"""Opening a push in WeChat's verification order, and building one as WeChat does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict, MultiDictProxy
from wechat_strategies import IDS, KINDS, kinds
from wechat_vectors import (
    AES_KEY,
    APPID,
    E1_MSG,
    E1_RANDOM,
    GH_ID,
    OPENID,
    PLAIN_BODY,
    PLAIN_QUERY,
    S_AES_KEY,
    S_APPID,
    S_BODY,
    S_QUERY,
    S_TOKEN,
    SAFE_BODY,
    SAFE_QUERY,
    TOKEN,
    URL_CHECK,
)

from libs.common.wechat import codec, errors
from libs.common.wechat.codec import TextMessage, UnknownEvent
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.push import Mode, PushConfig, build_push, open_push, verify_url

CIPHER = Cipher.from_key(AES_KEY, APPID)
SAMPLE = Cipher.from_key(S_AES_KEY, S_APPID)
SAFE = PushConfig(token=TOKEN, appid=APPID, cipher=CIPHER, mode="safe", fmt="json")
PLAIN = PushConfig(token=TOKEN, appid=APPID, mode="plain", fmt="json")
NOW = 1714112445.0
TEXT = TextMessage(to_user=GH_ID, from_user=OPENID, create_time=1, content="hi", msg_id=9)


def config(mode: Mode, **overrides: Any) -> PushConfig:
    base: dict[str, Any] = {"token": TOKEN, "appid": APPID, "mode": mode}
    if mode != "plain":
        base["cipher"] = CIPHER
    return PushConfig(**(base | overrides))


def refused(query: dict[str, str], body: bytes, cfg: PushConfig, now: float = NOW) -> str:
    with pytest.raises(errors.WeChatError) as caught:
        open_push(query, body, config=cfg, now=now)
    return caught.value.code


# --- URL verification -----------------------------------------------------------------------------


def test_the_url_check_answers_echostr() -> None:
    assert verify_url(URL_CHECK, TOKEN) == URL_CHECK["echostr"]


def test_the_url_check_reads_aiohttps_query_type() -> None:
    query = MultiDictProxy(MultiDict(URL_CHECK))
    assert verify_url(query, TOKEN) == URL_CHECK["echostr"]


@pytest.mark.parametrize(
    ("change", "code", "status"),
    [
        ({"signature": "0" * 40}, "bad_signature", 401),
        ({"signature": None}, "bad_signature", 401),
        ({"timestamp": "1714036505"}, "bad_signature", 401),
        ({"echostr": None}, "bad_query", 400),
        ({"timestamp": None}, "bad_query", 400),
        ({"timestamp": "17140365o4"}, "bad_query", 400),
        ({"nonce": None}, "bad_query", 400),
    ],
)
def test_a_bad_url_check_is_refused(change: dict[str, str | None], code: str, status: int) -> None:
    query = {k: v for k, v in (URL_CHECK | change).items() if v is not None}
    with pytest.raises(errors.WeChatError) as caught:
        verify_url(query, TOKEN)
    assert (caught.value.code, caught.value.http_status) == (code, status)


# --- WeChat's examples ----------------------------------------------------------------------------


def test_opens_the_official_plain_push() -> None:
    opened = open_push(PLAIN_QUERY, PLAIN_BODY, config=PLAIN, now=NOW)
    assert isinstance(opened.message, UnknownEvent)
    assert opened.message.fields == {"debug_str": "hello world"}
    assert (opened.fmt, opened.encrypted) == ("json", False)
    assert (opened.timestamp, opened.nonce) == (PLAIN_QUERY["timestamp"], PLAIN_QUERY["nonce"])


def test_opens_the_official_safe_push() -> None:
    opened = open_push(SAFE_QUERY, SAFE_BODY, config=SAFE, now=NOW)
    assert opened.message == codec.parse(E1_MSG)
    assert (opened.fmt, opened.encrypted, opened.nonce) == ("json", True, "415670741")


def test_builds_the_official_safe_push_byte_for_byte() -> None:
    query, body = build_push(
        codec.parse(E1_MSG),
        token=TOKEN,
        cipher=CIPHER,
        mode="safe",
        fmt="json",
        timestamp=1714112445,
        nonce="415670741",
        random16=E1_RANDOM,
    )
    assert query == SAFE_QUERY
    assert list(query) == list(SAFE_QUERY)
    assert body == SAFE_BODY


def test_builds_the_official_plain_push_byte_for_byte() -> None:
    msg = codec.parse(PLAIN_BODY)
    query, body = build_push(
        msg,
        token=TOKEN,
        cipher=None,
        mode="plain",
        fmt="json",
        timestamp=PLAIN_QUERY["timestamp"],
        nonce=PLAIN_QUERY["nonce"],
    )
    assert (query, body) == (PLAIN_QUERY, PLAIN_BODY)


@pytest.mark.parametrize("mode", ["compatible", "safe"])
def test_opens_the_sample_librarys_compatible_body(mode: Mode) -> None:
    cfg = PushConfig(token=S_TOKEN, appid=S_APPID, cipher=SAMPLE, mode=mode, fmt="xml")
    opened = open_push(S_QUERY, S_BODY, config=cfg, now=NOW)
    assert opened.message == TextMessage(
        to_user="gh_10f6c3c3ac5a",
        from_user="oyORnuP8q7ou2gfYjqLzSIWZf0rs",
        create_time=1409735668,
        content="abcdteT",
        msg_id=6054768590064713728,
    )
    assert (opened.fmt, opened.encrypted) == ("xml", True)


def test_the_message_inside_wins_over_the_plaintext_beside_it() -> None:
    # Compatible mode carries the fields twice; only the signed, encrypted copy is trusted.
    forged = S_BODY.replace(b"abcdteT", b"forged!")
    cfg = PushConfig(token=S_TOKEN, appid=S_APPID, cipher=SAMPLE, mode="compatible", fmt="xml")
    opened = open_push(S_QUERY, forged, config=cfg, now=NOW)
    assert isinstance(opened.message, TextMessage)
    assert opened.message.content == "abcdteT"


# --- the verification order, refusal by refusal --------------------------------------------------


def test_size_comes_first() -> None:
    assert refused({}, b" " * (SAFE.max_body_bytes + 1), SAFE) == "too_large"
    small = config("plain", max_body_bytes=len(PLAIN_BODY) - 1, fmt="json")
    assert refused(PLAIN_QUERY, PLAIN_BODY, small) == "too_large"


def test_plain_mode_checks_the_signature_before_reading_the_body() -> None:
    assert refused(PLAIN_QUERY | {"signature": "0" * 40}, b"garbage", PLAIN) == "bad_signature"
    assert refused({k: PLAIN_QUERY[k] for k in ("timestamp", "nonce")}, PLAIN_BODY, PLAIN) == (
        "bad_signature"
    )
    assert refused(PLAIN_QUERY, PLAIN_BODY, config("plain", token="BBBBB")) == "bad_signature"


@pytest.mark.parametrize("mode", ["compatible", "safe"])
def test_encrypted_modes_refuse_a_plaintext_push_whatever_its_signature(mode: Mode) -> None:
    assert refused(PLAIN_QUERY, PLAIN_BODY, config(mode)) == "plaintext_refused"
    raw = PLAIN_QUERY | {"encrypt_type": "raw"}
    assert refused(raw, PLAIN_BODY, config(mode)) == "plaintext_refused"
    with pytest.raises(errors.PlaintextRefused) as caught:
        open_push(PLAIN_QUERY, PLAIN_BODY, config=config(mode), now=NOW)
    assert caught.value.http_status == 403


@pytest.mark.parametrize(
    "body",
    [
        b'{"ToUserName":"gh_97417a04a28d"}',
        b'{"ToUserName":"gh_97417a04a28d","Encrypt":""}',
        b'{"ToUserName":"gh_97417a04a28d","Encrypt":123}',
        b'{"ToUserName":"gh_97417a04a28d","Encrypt":{"a":"b"}}',
        b"<xml><ToUserName><![CDATA[gh]]></ToUserName></xml>",
        b"<xml><Encrypt><a>1</a></Encrypt></xml>",
    ],
)
def test_an_envelope_without_encrypt_is_refused(body: bytes) -> None:
    assert refused(SAFE_QUERY, body, config("safe")) == "missing_encrypt"


def test_msg_signature_is_checked_before_anything_is_decrypted() -> None:
    # An undecryptable Encrypt with a wrong signature: the signature is what gets reported.
    body = b'{"ToUserName":"gh","Encrypt":"!!not base64!!"}'
    assert refused(SAFE_QUERY, body, SAFE) == "bad_signature"
    assert refused(SAFE_QUERY | {"msg_signature": ""}, SAFE_BODY, SAFE) == "bad_signature"
    no_sig = {k: v for k, v in SAFE_QUERY.items() if k != "msg_signature"}
    assert refused(no_sig, SAFE_BODY, SAFE) == "bad_signature"
    # The plain signature alone does not stand in for msg_signature.
    assert refused(SAFE_QUERY | {"msg_signature": SAFE_QUERY["signature"]}, SAFE_BODY, SAFE) == (
        "bad_signature"
    )


def test_a_tampered_ciphertext_fails_its_signature() -> None:
    body = SAFE_BODY.replace(b"+qdx", b"+qdy")
    assert refused(SAFE_QUERY, body, SAFE) == "bad_signature"


@pytest.mark.parametrize(
    ("inner", "code"),
    [
        pytest.param(b"hello", "unsupported_format", id="not-a-document"),
        pytest.param(b"", "empty_body", id="empty"),
        pytest.param(b'{"MsgType":"text","\xff":1}', "bad_encoding", id="not-utf8"),
        pytest.param(
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml>&a;</xml>',
            "xml_forbidden_construct",
            id="bomb-inside",
        ),
        pytest.param(b'{"MsgType":"text"}', "missing_field", id="incomplete"),
    ],
)
def test_a_bad_message_inside_a_valid_envelope_is_refused(inner: bytes, code: str) -> None:
    query, body = build_push(
        inner,
        token=TOKEN,
        cipher=CIPHER,
        mode="safe",
        fmt="json",
        timestamp="1714112445",
        nonce="1",
        to_user=GH_ID,
        openid=OPENID,
    )
    assert refused(query, body, config("safe")) == code


def test_a_push_for_another_appid_is_refused() -> None:
    other = Cipher.from_key(AES_KEY, "wx0000000000000000")
    query, body = build_push(
        TEXT, token=TOKEN, cipher=other, mode="safe", fmt="xml", timestamp=1, nonce="2"
    )
    assert refused(query, body, config("safe")) == "bad_appid"


def test_the_inner_format_must_match_a_configured_format() -> None:
    query, body = build_push(
        codec.render(TEXT, "xml"),
        token=TOKEN,
        cipher=CIPHER,
        mode="safe",
        fmt="json",
        timestamp=1,
        nonce="2",
    )
    assert refused(query, body, config("safe", fmt="json")) == "unsupported_format"
    assert open_push(query, body, config=config("safe", fmt="auto"), now=NOW).message == TEXT


def test_the_body_format_must_match_the_configured_format() -> None:
    assert refused(SAFE_QUERY, SAFE_BODY, config("safe", fmt="xml")) == "unsupported_format"
    assert refused(PLAIN_QUERY, PLAIN_BODY, config("plain", fmt="xml")) == "unsupported_format"


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_the_timestamps_age_is_checked_when_asked(mode: Mode) -> None:
    query, body = build_push(
        TEXT, token=TOKEN, cipher=CIPHER, mode=mode, fmt="xml", timestamp=1_000_000, nonce="7"
    )
    strict = config(mode, max_age_s=300)
    assert open_push(query, body, config=strict, now=1_000_300).message == TEXT
    assert open_push(query, body, config=strict, now=999_700).message == TEXT
    assert refused(query, body, strict, now=1_000_301) == "expired_timestamp"
    assert refused(query, body, strict, now=999_699) == "expired_timestamp"
    assert open_push(query, body, config=config(mode), now=5e9).message == TEXT
    # A bad signature is reported as such even when the timestamp is stale too.
    forged = query | {"signature": "0" * 40, "msg_signature": "0" * 40}
    assert refused(forged, body, strict, now=2_000_000) == "bad_signature"


def test_query_parameters_are_required() -> None:
    no_nonce = {k: v for k, v in PLAIN_QUERY.items() if k != "nonce"}
    assert refused(no_nonce, PLAIN_BODY, PLAIN) == "bad_query"
    assert refused(PLAIN_QUERY | {"timestamp": "-1"}, PLAIN_BODY, PLAIN) == "bad_query"
    assert refused(PLAIN_QUERY | {"timestamp": "1" * 21}, PLAIN_BODY, PLAIN) == "bad_query"


def test_a_plain_push_carrying_a_bomb_is_refused_at_its_doctype() -> None:
    bomb = b'<!DOCTYPE xml [<!ENTITY a "aa"><!ENTITY b "&a;&a;">]><xml><C>&b;</C></xml>'
    query, body = build_push(
        bomb, token=TOKEN, cipher=None, mode="plain", fmt="xml", timestamp=1, nonce="2"
    )
    with pytest.raises(errors.XmlForbiddenConstruct) as caught:
        open_push(query, body, config=config("plain"), now=NOW)
    assert "DOCTYPE" in caught.value.detail


def test_a_plain_push_with_a_bad_message_is_refused_after_its_signature() -> None:
    query, body = build_push(
        b"[1]", token=TOKEN, cipher=None, mode="plain", fmt="json", timestamp=1, nonce="2"
    )
    assert refused(query, body, PLAIN) == "malformed_json"


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token": "", "appid": APPID},
        {"token": TOKEN, "appid": APPID, "mode": "safe"},
        {"token": TOKEN, "appid": APPID, "mode": "compatible"},
        {"token": TOKEN, "appid": "wxother", "mode": "safe", "cipher": CIPHER},
        {"token": TOKEN, "appid": APPID, "mode": "secret"},
        {"token": TOKEN, "appid": APPID, "fmt": "yaml"},
        {"token": TOKEN, "appid": APPID, "max_body_bytes": 0},
        {"token": TOKEN, "appid": APPID, "max_age_s": -1},
    ],
)
def test_an_unusable_config_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidConfig):
        PushConfig(**kwargs)


def test_the_config_never_shows_its_token() -> None:
    cfg = config("safe", token="s3cr3t-t0ken")
    assert "s3cr3t-t0ken" not in repr(cfg)
    assert "s3cr3t-t0ken" not in str(cfg)


# --- build_push: what WeChat sends in each mode ---------------------------------------------------


def test_compatible_bodies_carry_the_plaintext_and_encrypt_last() -> None:
    for fmt in ("xml", "json"):
        query, body = build_push(
            TEXT, token=TOKEN, cipher=CIPHER, mode="compatible", fmt=fmt, timestamp=1, nonce="2"
        )
        doc = codec.document(body, fmt)
        assert list(doc)[-1] == "Encrypt"
        assert {k: v for k, v in doc.items() if k != "Encrypt"} == codec.document(
            codec.render(TEXT, fmt), fmt
        )
        assert CIPHER.decrypt(doc["Encrypt"]) == codec.render(TEXT, fmt)
        assert query["encrypt_type"] == "aes"
        assert query["openid"] == OPENID


def test_safe_bodies_carry_only_the_id_and_encrypt() -> None:
    _, body = build_push(
        TEXT,
        token=TOKEN,
        cipher=CIPHER,
        mode="safe",
        fmt="xml",
        timestamp=1,
        nonce="2",
        random16=b"0" * 16,
    )
    encrypt = CIPHER.encrypt(codec.render(TEXT, "xml"), random16=b"0" * 16)
    assert body == (
        b"<xml><ToUserName><![CDATA[" + GH_ID.encode() + b"]]></ToUserName>"
        b"<Encrypt><![CDATA[" + encrypt.encode() + b"]]></Encrypt></xml>"
    )


def test_plaintext_bytes_name_their_ids_or_are_parsed_for_them() -> None:
    query, _ = build_push(
        codec.render(TEXT, "json"),
        token=TOKEN,
        cipher=CIPHER,
        mode="safe",
        fmt="json",
        timestamp=1,
        nonce="2",
    )
    assert query["openid"] == OPENID
    with pytest.raises(errors.MalformedJson):
        build_push(
            b"{", token=TOKEN, cipher=CIPHER, mode="safe", fmt="json", timestamp=1, nonce="2"
        )
    with pytest.raises(errors.InvalidConfig):
        build_push(TEXT, token=TOKEN, cipher=None, mode="safe", fmt="json", timestamp=1, nonce="2")
    with pytest.raises(errors.Unrepresentable):
        build_push(
            b"[]",
            token=TOKEN,
            cipher=CIPHER,
            mode="compatible",
            fmt="json",
            timestamp=1,
            nonce="2",
            to_user="g",
            openid="o",
        )


@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
@pytest.mark.parametrize("kind", KINDS)
@settings(deadline=None, max_examples=25)
@given(
    data=st.data(),
    auto=st.booleans(),
    token=IDS,
    timestamp=st.integers(0, 2**32),
    nonce=st.text("0123456789", min_size=1, max_size=10),
)
def test_build_push_then_open_push_gives_back_the_message(
    kind: str,
    mode: Mode,
    fmt: codec.Format,
    data: st.DataObject,
    auto: bool,
    token: str,
    timestamp: int,
    nonce: str,
) -> None:
    msg = data.draw(kinds()[kind])
    cfg = PushConfig(
        token=token,
        appid=APPID,
        cipher=None if mode == "plain" else CIPHER,
        mode=mode,
        fmt="auto" if auto else fmt,
        max_age_s=60,
    )
    query, body = build_push(
        msg, token=token, cipher=cfg.cipher, mode=mode, fmt=fmt, timestamp=timestamp, nonce=nonce
    )
    opened = open_push(query, body, config=cfg, now=timestamp + 30)
    assert opened.message == msg
    assert (opened.fmt, opened.encrypted) == (fmt, mode != "plain")
    assert (opened.timestamp, opened.nonce) == (str(timestamp), nonce)
