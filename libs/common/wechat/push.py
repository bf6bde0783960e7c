"""A push from WeChat, checked and opened in one pure function; and built, for the simulator.

:func:`open_push` follows WeChat's verification order: the size; then in plain mode the
``signature`` of (token, timestamp, nonce); in the compatible and safe modes ``encrypt_type``,
the envelope's ``Encrypt`` and its ``msg_signature`` (constant-time), so that nothing is
decrypted for a sender who does not hold the token; then the timestamp's age, the
decryption (appid checked) and the message. Every refusal is a :class:`WeChatError`.

:func:`build_push` does what WeChat does before it sends: the query string and the body of
each mode and format, signed and encrypted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, TypeAlias

import msgspec

from libs.common.wechat import codec, xml
from libs.common.wechat.codec import Format, FormatChoice, Message
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.errors import (
    BadQuery,
    BadSignature,
    ExpiredTimestamp,
    InvalidConfig,
    MissingEncrypt,
    PlaintextRefused,
    TooLarge,
    Unrepresentable,
)
from libs.common.wechat.signature import sign, verify

Mode: TypeAlias = Literal["plain", "compatible", "safe"]
MODES: tuple[Mode, ...] = ("plain", "compatible", "safe")
FORMATS: tuple[FormatChoice, ...] = ("xml", "json", "auto")


class PushConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How this URL is configured in WeChat's console, plus our own limits."""

    token: str
    appid: str
    cipher: Cipher | None = None
    """Required by the compatible and safe modes."""
    mode: Mode = "plain"
    fmt: FormatChoice = "auto"
    max_body_bytes: int = 256 * 1024
    max_age_s: float = 0
    """Refuse a signed timestamp further than this from now; 0 turns the check off."""

    def __post_init__(self) -> None:
        if not self.token:
            raise InvalidConfig("the token must not be empty")
        if self.mode not in MODES:
            raise InvalidConfig(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.fmt not in FORMATS:
            raise InvalidConfig(f"fmt must be one of {', '.join(FORMATS)}, not {self.fmt!r}")
        if self.mode != "plain" and self.cipher is None:
            raise InvalidConfig(f"the {self.mode} mode needs the EncodingAESKey (a cipher)")
        if self.cipher is not None and self.cipher.appid != self.appid:
            raise InvalidConfig("the cipher was built for another appid")
        if self.max_body_bytes < 1:
            raise InvalidConfig("max_body_bytes must be positive")
        if self.max_age_s < 0:
            raise InvalidConfig("max_age_s must be 0 (off) or positive")

    def __repr__(self) -> str:
        # The token signs everything; it must never reach a log line or a traceback.
        return (
            f"PushConfig(appid={self.appid!r}, mode={self.mode!r}, fmt={self.fmt!r}, "
            f"max_body_bytes={self.max_body_bytes}, max_age_s={self.max_age_s})"
        )


class OpenedPush(msgspec.Struct, frozen=True, kw_only=True):
    """A verified push: its message, and what the reply to it needs."""

    message: Message
    fmt: Format
    """The body's format; an answer other than ``success`` must use it."""
    encrypted: bool
    """True when the message came encrypted; then so must an answer other than ``success``."""
    timestamp: str
    nonce: str
    """WeChat's nonce, which the encrypted answer may reuse."""


def single_query(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The query as WeChat sends it: each parameter once. A repeated one is refused, since
    which of its values a proxy, a log or this code reads is a matter of taste."""
    query: dict[str, str] = {}
    for name, value in pairs:
        if name in query:
            raise BadQuery(f"the query repeats {name[:32]!r}")
        query[name] = value
    return query


def verify_url(query: Mapping[str, str], token: str) -> str:
    """The ``echostr`` to answer WeChat's URL check with, once its signature holds."""
    timestamp, nonce = _timestamp(query), _param(query, "nonce")
    echostr = _param(query, "echostr")
    _check_signature(query, "signature", token, timestamp, nonce)
    return echostr


def open_push(
    query: Mapping[str, str], body: bytes, *, config: PushConfig, now: float
) -> OpenedPush:
    """Verify, decrypt and parse one push (WeChat's query string and body)."""
    if len(body) > config.max_body_bytes:
        raise TooLarge(f"{len(body)} bytes is more than the {config.max_body_bytes} allowed")
    timestamp, nonce = _timestamp(query), _param(query, "nonce")
    limit = config.max_body_bytes
    if config.mode == "plain":
        _check_signature(query, "signature", config.token, timestamp, nonce)
        _check_age(timestamp, now, config.max_age_s)
        fmt = codec.detect(body, config.fmt)
        message = codec.from_document(codec.document(body, fmt, max_bytes=limit))
        return OpenedPush(
            message=message, fmt=fmt, encrypted=False, timestamp=timestamp, nonce=nonce
        )
    encrypt_type = query.get("encrypt_type")
    if encrypt_type != "aes":
        shown = "missing" if encrypt_type is None else repr(encrypt_type[:16])
        raise PlaintextRefused(f"the {config.mode} mode needs encrypt_type=aes, it is {shown}")
    fmt = codec.detect(body, config.fmt)
    encrypt = codec.document(body, fmt, max_bytes=limit).get("Encrypt")
    if not isinstance(encrypt, str) or not encrypt:
        raise MissingEncrypt("the body has no Encrypt text")
    _check_signature(query, "msg_signature", config.token, timestamp, nonce, encrypt)
    _check_age(timestamp, now, config.max_age_s)
    assert config.cipher is not None  # PushConfig refuses an encrypted mode without one
    plaintext = config.cipher.decrypt(encrypt)
    message = codec.parse(plaintext, config.fmt, max_bytes=limit)
    return OpenedPush(message=message, fmt=fmt, encrypted=True, timestamp=timestamp, nonce=nonce)


def _param(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if not value:
        raise BadQuery(f"the query has no {name}")
    return value


def _timestamp(query: Mapping[str, str]) -> str:
    value = _param(query, "timestamp")
    if not (len(value) <= 20 and value.isascii() and value.isdigit()):
        raise BadQuery("the timestamp is not a number of seconds")
    return value


def _check_signature(query: Mapping[str, str], name: str, *parts: str) -> None:
    signature = query.get(name)
    if not signature:
        raise BadSignature(f"the query has no {name}")
    if not verify(signature, *parts):
        raise BadSignature(f"{name} does not match")


def _check_age(timestamp: str, now: float, max_age_s: float) -> None:
    if max_age_s <= 0:
        return
    age = now - int(timestamp)
    if abs(age) > max_age_s:
        when = "old" if age > 0 else "ahead of our clock"
        raise ExpiredTimestamp(f"the timestamp is {abs(age):.0f} s {when}; {max_age_s:g} s allowed")


# --- the other direction: what WeChat sends ------------------------------------------------------

_json = msgspec.json.Encoder()


def build_push(
    msg: Message | bytes,
    *,
    token: str,
    cipher: Cipher | None,
    mode: Mode,
    fmt: Format,
    timestamp: int | str,
    nonce: str,
    to_user: str | None = None,
    openid: str | None = None,
    random16: bytes | None = None,
) -> tuple[dict[str, str], bytes]:
    """The query and body WeChat sends for ``msg`` (a message, or its plaintext as bytes).

    The encrypted modes put the mini program's id and the user's openid outside the
    ciphertext; they come from ``msg`` unless given (they must be, for a plaintext that is
    deliberately not a valid message).
    """
    plaintext = msg if isinstance(msg, bytes) else codec.render(msg, fmt)
    timestamp = str(timestamp)
    query = {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    if mode == "plain":
        return query, plaintext
    if cipher is None:
        raise InvalidConfig(f"the {mode} mode needs a cipher")
    if to_user is None or openid is None:
        parsed = codec.parse(msg) if isinstance(msg, bytes) else msg
        to_user = parsed.to_user if to_user is None else to_user
        openid = parsed.from_user if openid is None else openid
    encrypt = cipher.encrypt(plaintext, random16=random16)
    query["openid"] = openid
    query["encrypt_type"] = "aes"
    query["msg_signature"] = sign(token, timestamp, nonce, encrypt)
    if mode == "safe":
        envelope = [("ToUserName", to_user), ("Encrypt", encrypt)]
        body = xml.build(envelope) if fmt == "xml" else _json.encode(dict(envelope))
    else:
        body = _with_encrypt(plaintext, encrypt, fmt)
    return query, body


def _with_encrypt(plaintext: bytes, encrypt: str, fmt: Format) -> bytes:
    """The compatible mode's body: the plaintext document with ``Encrypt`` as its last field."""
    text = plaintext.rstrip(b" \t\r\n")
    if fmt == "xml":
        if not text.endswith(b"</xml>"):
            raise Unrepresentable("the compatible mode needs a plaintext ending in </xml>")
        field = f"<Encrypt>{xml.cdata(encrypt)}</Encrypt>".encode()
        return text[: -len(b"</xml>")] + field + b"</xml>"
    if not text.endswith(b"}"):
        raise Unrepresentable("the compatible mode needs a plaintext JSON object")
    head = text[:-1].rstrip(b" \t\r\n")
    comma = b"" if head.endswith(b"{") else b","
    return head + comma + b'"Encrypt":' + _json.encode(encrypt) + b"}"
