"""The AES scheme: the published vectors, round trips, and every malformed ciphertext."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher as AesCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from wechat_vectors import (
    AES_KEY,
    APPID,
    E1,
    E1_MSG,
    E1_RANDOM,
    E2,
    E2_MSG,
    E2_RANDOM,
    REPLY_ENCRYPT,
    REPLY_MSG,
    REPLY_RANDOM,
    S_AES_KEY,
    S_APPID,
)

from libs.common.wechat import errors
from libs.common.wechat.crypto import BLOCK, Cipher, aes_key

CIPHER = Cipher.from_key(AES_KEY, APPID)
SAMPLE = Cipher.from_key(S_AES_KEY, S_APPID)
APPIDS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32)


def raw_ciphertext(plain: bytes, key: str = AES_KEY) -> str:
    """AES-CBC of ``plain`` exactly as given (no padding added): for crafting bad layouts."""
    k = aes_key(key)
    encryptor = AesCipher(algorithms.AES(k), modes.CBC(k[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def layout(msg: bytes, appid: bytes, *, length: int | None = None) -> bytes:
    size = len(msg) if length is None else length
    return b"R" * 16 + size.to_bytes(4, "big") + msg + appid


def padded(plain: bytes) -> bytes:
    pad = BLOCK - len(plain) % BLOCK
    return plain + bytes((pad,)) * pad


# --- the key ------------------------------------------------------------------------------------


def test_the_key_is_the_base64_of_the_43_characters() -> None:
    assert aes_key(AES_KEY) == bytes(32)
    assert aes_key(S_AES_KEY) == base64.b64decode(S_AES_KEY + "=")
    assert len(aes_key(S_AES_KEY)) == 32


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("A" * 42, id="42-chars"),
        pytest.param("A" * 44, id="44-chars"),
        pytest.param("", id="empty"),
        pytest.param("A" * 42 + "=", id="padding-char"),
        pytest.param("A" * 42 + "-", id="urlsafe-char"),
        pytest.param("A" * 42 + "é", id="non-ascii"),
        pytest.param("A" * 21 + " " + "A" * 21, id="space"),
    ],
)
def test_a_bad_key_is_refused_without_being_quoted(key: str) -> None:
    with pytest.raises(errors.BadAesKey) as caught:
        Cipher.from_key(key, APPID)
    assert caught.value.code == "bad_aes_key"
    assert isinstance(caught.value, errors.InvalidConfig)
    if key:
        assert key not in str(caught.value)


@pytest.mark.parametrize("appid", ["", "wx\u4e2d", "wx 1\n"])
def test_a_bad_appid_is_a_config_error(appid: str) -> None:
    with pytest.raises(errors.InvalidConfig):
        Cipher.from_key(AES_KEY, appid)


def test_the_cipher_never_shows_its_key() -> None:
    cipher = Cipher.from_key(S_AES_KEY, S_APPID)
    for text in (repr(cipher), str(cipher)):
        assert S_AES_KEY not in text
        assert repr(aes_key(S_AES_KEY)) not in text
        assert S_APPID in text


# --- the vectors --------------------------------------------------------------------------------


def test_decrypts_the_official_safe_mode_example() -> None:
    assert CIPHER.decrypt(E1) == E1_MSG
    assert CIPHER.decrypt(E1.encode()) == E1_MSG


def test_reencrypting_with_the_same_random_reproduces_the_official_example() -> None:
    assert CIPHER.encrypt(E1_MSG, random16=E1_RANDOM) == E1


def test_decrypts_and_reproduces_the_sample_library_example() -> None:
    assert SAMPLE.decrypt(E2) == E2_MSG
    assert SAMPLE.encrypt(E2_MSG, random16=E2_RANDOM) == E2


def test_encrypts_the_official_reply_example() -> None:
    assert CIPHER.encrypt(REPLY_MSG, random16=REPLY_RANDOM) == REPLY_ENCRYPT


def test_the_default_random_prefix_is_fresh_ascii() -> None:
    first, second = CIPHER.encrypt(b"x"), CIPHER.encrypt(b"x")
    assert first != second
    plain = base64.b64decode(first)
    k = aes_key(AES_KEY)
    decryptor = AesCipher(algorithms.AES(k), modes.CBC(k[:16])).decryptor()
    prefix = (decryptor.update(plain) + decryptor.finalize())[:16]
    assert prefix.isascii()
    assert prefix.isalnum()


def test_random16_must_be_16_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        CIPHER.encrypt(b"x", random16=b"short")


@given(text=st.text(), appid=APPIDS, random16=st.binary(min_size=16, max_size=16))
@settings(deadline=None)
def test_round_trip_for_any_text_and_appid(text: str, appid: str, random16: bytes) -> None:
    cipher = Cipher.from_key(S_AES_KEY, appid)
    msg = text.encode()
    encrypt = cipher.encrypt(msg, random16=random16)
    assert len(base64.b64decode(encrypt)) % BLOCK == 0
    assert cipher.decrypt(encrypt) == msg


@pytest.mark.parametrize("text", ["", "你好，世界 👋🏽", "line one\nline two\r\n", "x" * 5000])
def test_round_trip_of_the_awkward_cases(text: str) -> None:
    assert CIPHER.decrypt(CIPHER.encrypt(text.encode())) == text.encode()


@pytest.mark.parametrize("size", range(70))
def test_padding_at_every_length_is_pkcs7_with_a_32_byte_block(size: int) -> None:
    # size + 20 header bytes + 18 appid bytes: every residue mod 32 shows up, including 0,
    # where a whole block of 32 pad bytes is added.
    encrypt = CIPHER.encrypt(b"m" * size, random16=b"0" * 16)
    total = 16 + 4 + size + len(APPID)
    assert len(base64.b64decode(encrypt)) == total + (BLOCK - total % BLOCK)
    assert CIPHER.decrypt(encrypt) == b"m" * size


# --- malformed ciphertexts: each with its code --------------------------------------------------

MALFORMED = [
    pytest.param(E1[:-1], "bad_base64", id="truncated-base64"),
    pytest.param(E1[:-2] + "=", "bad_base64", id="truncated-padding"),
    pytest.param("!!!!" + E1[4:], "bad_base64", id="non-base64-chars"),
    pytest.param(E1[:100] + "\n" + E1[100:], "bad_base64", id="newline-inside"),
    pytest.param(" " + E1, "bad_base64", id="leading-space"),
    pytest.param(E1.replace("+", "-").replace("/", "_"), "bad_base64", id="urlsafe-alphabet"),
    pytest.param(E1 + "AAAA", "bad_base64", id="data-after-padding"),
    pytest.param("é" + E1[1:], "bad_base64", id="non-ascii-str"),
    pytest.param("", "bad_block_size", id="empty"),
    pytest.param(base64.b64encode(bytes(16)).decode(), "bad_block_size", id="one-aes-block"),
    pytest.param(base64.b64encode(bytes(48)).decode(), "bad_block_size", id="48-bytes"),
    pytest.param(
        base64.b64encode(base64.b64decode(E1)[:-1]).decode(), "bad_block_size", id="one-byte-short"
    ),
    pytest.param(
        raw_ciphertext(layout(b"hi", APPID.encode()) + bytes(24)), "bad_padding", id="pad-0"
    ),
    pytest.param(raw_ciphertext(b"x" * 31 + bytes((33,)) * 33), "bad_padding", id="pad-33"),
    pytest.param(
        raw_ciphertext(b"x" * 20 + b"\x01\x02" + bytes((12,)) * 10),
        "bad_padding",
        id="unequal-pad-bytes",
    ),
    pytest.param(raw_ciphertext(bytes((32,)) * 32), "bad_length", id="nothing-but-padding"),
    pytest.param(
        raw_ciphertext(padded(b"R" * 16 + b"\x00\x00")), "bad_length", id="header-cut-short"
    ),
    pytest.param(
        raw_ciphertext(padded(layout(b"{}", APPID.encode(), length=1000))),
        "bad_length",
        id="length-beyond-buffer",
    ),
    pytest.param(
        raw_ciphertext(padded(layout(b"{}", APPID.encode(), length=2**32 - 1))),
        "bad_length",
        id="length-huge",
    ),
    pytest.param(
        Cipher.from_key(AES_KEY, "wx0000000000000000").encrypt(b"{}"),
        "bad_appid",
        id="another-appid",
    ),
    pytest.param(
        Cipher.from_key(AES_KEY, APPID[:-1]).encrypt(b"{}"), "bad_appid", id="appid-prefix"
    ),
    pytest.param(
        Cipher.from_key(AES_KEY, APPID + "0").encrypt(b"{}"), "bad_appid", id="appid-longer"
    ),
    pytest.param(
        raw_ciphertext(padded(layout(b"{}", APPID.encode(), length=1))),
        "bad_appid",
        id="length-too-short",
    ),
]


@pytest.mark.parametrize(("encrypt", "code"), MALFORMED)
def test_malformed_ciphertext_is_refused_with_its_reason(encrypt: str, code: str) -> None:
    with pytest.raises(errors.DecryptError) as caught:
        CIPHER.decrypt(encrypt)
    assert caught.value.code == code
    assert caught.value.http_status in (400, 403)


def test_a_ciphertext_for_another_key_is_refused() -> None:
    with pytest.raises(errors.DecryptError):
        CIPHER.decrypt(E2)


def test_non_ascii_bytes_are_refused_as_base64() -> None:
    with pytest.raises(errors.BadBase64):
        CIPHER.decrypt(b"\xff" + E1.encode()[1:])


@given(st.binary(max_size=400))
@settings(deadline=None)
def test_random_bytes_only_ever_raise_decrypt_errors(data: bytes) -> None:
    for candidate in (data, base64.b64encode(data)):
        with pytest.raises(errors.DecryptError):
            CIPHER.decrypt(candidate)


@given(st.text(max_size=400))
@settings(deadline=None)
def test_random_text_only_ever_raises_decrypt_errors(text: str) -> None:
    with pytest.raises(errors.DecryptError):
        CIPHER.decrypt(text)
