"""Passive answers: success, transfer, the encrypted envelope, and WeChat reading them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wechat_strategies import IDS, XML_TEXT
from wechat_vectors import (
    AES_KEY,
    APPID,
    REPLY_ENCRYPT,
    REPLY_JSON,
    REPLY_MSG,
    REPLY_NONCE,
    REPLY_RANDOM,
    REPLY_SIGNATURE,
    REPLY_TIMESTAMP,
    TOKEN,
)

from libs.common.wechat import codec, errors, replies
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.push import Mode
from libs.common.wechat.replies import Reply, encrypt_reply, read_reply, transfer

CIPHER = Cipher.from_key(AES_KEY, APPID)


def sealed(
    plaintext: bytes, fmt: codec.Format, *, timestamp: int | str = 1700000000, nonce: str = "123"
) -> bytes:
    return encrypt_reply(CIPHER, TOKEN, plaintext, timestamp=timestamp, nonce=nonce, fmt=fmt)


def test_success_is_the_literal_word() -> None:
    assert replies.SUCCESS == b"success"


def test_transfer_is_the_documented_xml() -> None:
    assert transfer("touser", "fromuser", 1399197672, "xml") == (
        b"<xml><ToUserName><![CDATA[touser]]></ToUserName>"
        b"<FromUserName><![CDATA[fromuser]]></FromUserName>"
        b"<CreateTime>1399197672</CreateTime>"
        b"<MsgType><![CDATA[transfer_customer_service]]></MsgType></xml>"
    )


def test_transfer_is_the_documented_json() -> None:
    assert transfer("touser", "fromuser", 1399197672, "json") == (
        b'{"ToUserName":"touser","FromUserName":"fromuser","CreateTime":1399197672,'
        b'"MsgType":"transfer_customer_service"}'
    )


def test_encrypts_the_official_reply_example_byte_for_byte() -> None:
    body = encrypt_reply(
        CIPHER,
        TOKEN,
        REPLY_MSG,
        timestamp=REPLY_TIMESTAMP,
        nonce=REPLY_NONCE,
        fmt="json",
        random16=REPLY_RANDOM,
    )
    assert body == REPLY_JSON


def test_the_xml_envelope_has_wechats_order_and_a_bare_timestamp() -> None:
    body = encrypt_reply(
        CIPHER,
        TOKEN,
        REPLY_MSG,
        timestamp=str(REPLY_TIMESTAMP),
        nonce=REPLY_NONCE,
        fmt="xml",
        random16=REPLY_RANDOM,
    )
    assert body == (
        b"<xml><Encrypt><![CDATA[" + REPLY_ENCRYPT.encode() + b"]]></Encrypt>"
        b"<MsgSignature><![CDATA[" + REPLY_SIGNATURE.encode() + b"]]></MsgSignature>"
        b"<TimeStamp>1713424427</TimeStamp><Nonce><![CDATA[415670741]]></Nonce></xml>"
    )


def test_a_nonce_xml_cannot_carry_is_refused_not_mangled() -> None:
    with pytest.raises(errors.Unrepresentable):
        sealed(b"x", "xml", nonce="\x1f")
    assert read_reply(sealed(b"x", "json", nonce="\x1f"), token=TOKEN, cipher=CIPHER, fmt="json")


def test_a_timestamp_that_is_not_seconds_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unix seconds"):
        sealed(b"x", "json", timestamp="soon")


# --- reading answers as WeChat does ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
def test_success_and_empty_need_no_encryption(fmt: codec.Format, mode: Mode) -> None:
    cipher = None if mode == "plain" else CIPHER
    for body, kind in ((b"success", "success"), (b"", "empty")):
        reply = read_reply(body, token=TOKEN, cipher=cipher, fmt=fmt, mode=mode)
        assert reply == Reply(kind=kind)


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_an_encrypted_transfer_is_read_in_the_safe_mode(fmt: codec.Format) -> None:
    body = sealed(transfer("o_user", "gh_1", 1399197672, fmt), fmt)
    assert read_reply(body, token=TOKEN, cipher=CIPHER, fmt=fmt) == Reply(
        kind="transfer_customer_service",
        encrypted=True,
        to_user="o_user",
        from_user="gh_1",
        create_time=1399197672,
    )


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_a_plain_transfer_is_read_in_the_plain_and_compatible_modes(fmt: codec.Format) -> None:
    body = transfer("o_user", "gh_1", 5, fmt)
    expected = Reply(
        kind="transfer_customer_service", to_user="o_user", from_user="gh_1", create_time=5
    )
    assert read_reply(body, token=TOKEN, cipher=None, fmt=fmt) == expected
    assert read_reply(body, token=TOKEN, cipher=CIPHER, fmt=fmt, mode="compatible") == expected


def test_an_encrypted_success_is_still_success() -> None:
    body = sealed(b"success", "xml")
    assert read_reply(body, token=TOKEN, cipher=CIPHER, fmt="xml") == Reply(
        kind="success", encrypted=True
    )
    assert read_reply(sealed(b"", "json"), token=TOKEN, cipher=CIPHER, fmt="json").kind == "empty"


INVALID = [
    pytest.param(b"success\n", "xml", "safe", "starts with neither", id="success-newline"),
    pytest.param(b"SUCCESS", "xml", "safe", "starts with neither", id="success-uppercase"),
    pytest.param(b"ok", "json", "plain", "starts with neither", id="plain-text"),
    pytest.param(b"<xml>", "xml", "plain", "malformed_xml", id="broken-xml"),
    pytest.param(b"[1]", "json", "plain", "malformed_json", id="json-array"),
    pytest.param(
        transfer("o", "gh", 1, "xml"),
        "xml",
        "safe",
        "needs this answer encrypted",
        id="plain-transfer-in-safe-mode",
    ),
    pytest.param(
        transfer("o", "gh", 1, "xml"), "json", "plain", "unsupported_format", id="wrong-format"
    ),
    pytest.param(
        codec.render(
            codec.TextMessage(to_user="o", from_user="gh", create_time=1, content="hi", msg_id=1),
            "xml",
        ),
        "xml",
        "plain",
        "MsgType must be",
        id="text-reply",
    ),
    pytest.param(REPLY_JSON, "json", "safe", "MsgType must be", id="not-a-transfer-inside"),
    pytest.param(
        b'{"ToUserName":"o","FromUserName":"gh","CreateTime":"1",'
        b'"MsgType":"transfer_customer_service"}',
        "json",
        "plain",
        "CreateTime",
        id="json-createtime-string",
    ),
    pytest.param(
        b'{"ToUserName":"o","CreateTime":1,"MsgType":"transfer_customer_service"}',
        "json",
        "plain",
        "FromUserName",
        id="missing-fromuser",
    ),
    pytest.param(
        b'{"ToUserName":"","FromUserName":"gh","CreateTime":1,'
        b'"MsgType":"transfer_customer_service"}',
        "json",
        "plain",
        "ToUserName",
        id="empty-touser",
    ),
    pytest.param(
        REPLY_JSON.replace(REPLY_SIGNATURE.encode(), b"0" * 40),
        "json",
        "safe",
        "MsgSignature does not match",
        id="bad-signature",
    ),
    pytest.param(
        REPLY_JSON.replace(b"1713424427", b"1713424428"),
        "json",
        "safe",
        "MsgSignature does not match",
        id="timestamp-changed",
    ),
    pytest.param(
        REPLY_JSON.replace(b"1713424427", b'"1713424427"'),
        "json",
        "safe",
        "TimeStamp is not an integer",
        id="json-timestamp-string",
    ),
    pytest.param(
        REPLY_JSON.replace(b',"Nonce":"415670741"', b""),
        "json",
        "safe",
        "Nonce",
        id="missing-nonce",
    ),
    pytest.param(
        encrypt_reply(
            Cipher.from_key(AES_KEY, "wx0000000000000000"),
            TOKEN,
            transfer("o", "gh", 1, "json"),
            timestamp=1,
            nonce="2",
            fmt="json",
        ),
        "json",
        "safe",
        "bad_appid",
        id="another-appid",
    ),
]


@pytest.mark.parametrize(("body", "fmt", "mode", "reason"), INVALID)
def test_anything_else_is_invalid_with_a_reason(
    body: bytes, fmt: codec.Format, mode: Mode, reason: str
) -> None:
    cipher = None if mode == "plain" else CIPHER
    reply = read_reply(body, token=TOKEN, cipher=cipher, fmt=fmt, mode=mode)
    assert reply.kind == "invalid"
    assert reason in reply.reason


def test_an_encrypted_answer_without_a_key_is_invalid() -> None:
    body = sealed(transfer("o", "gh", 1, "json"), "json")
    reply = read_reply(body, token=TOKEN, cipher=None, fmt="json", mode="compatible")
    assert reply.kind == "invalid"
    assert "no EncodingAESKey" in reply.reason


@given(
    openid=IDS,
    gh_id=IDS,
    create_time=st.integers(0, 2**32),
    timestamp=st.integers(0, 2**32),
    nonce=XML_TEXT.filter(bool),
    fmt=st.sampled_from(["xml", "json"]),
)
@settings(deadline=None)
def test_an_encrypted_transfer_reads_back(
    openid: str, gh_id: str, create_time: int, timestamp: int, nonce: str, fmt: codec.Format
) -> None:
    body = sealed(transfer(openid, gh_id, create_time, fmt), fmt, timestamp=timestamp, nonce=nonce)
    reply = read_reply(body, token=TOKEN, cipher=CIPHER, fmt=fmt)
    assert (reply.kind, reply.encrypted) == ("transfer_customer_service", True)
    assert (reply.to_user, reply.from_user, reply.create_time) == (openid, gh_id, create_time)
