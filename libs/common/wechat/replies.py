"""The passive answer to a push, and reading one as WeChat does (for the simulator).

A mini program may answer ``success`` (or an empty body), or ``transfer_customer_service`` to
hand that user message to the human agents' tool. Once the push came encrypted, an answer
other than ``success`` goes out in the encrypted envelope, in the push's format.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import msgspec

from libs.common.wechat import codec, xml
from libs.common.wechat.codec import Format, FormatChoice
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.errors import WeChatError
from libs.common.wechat.push import Mode
from libs.common.wechat.signature import sign, verify

SUCCESS = b"success"
"""The answer that means "received, nothing to add"; it is never encrypted."""
TRANSFER = "transfer_customer_service"

ReplyKind: TypeAlias = Literal["success", "empty", "transfer_customer_service", "invalid"]

_json = msgspec.json.Encoder()


def transfer(openid: str, gh_id: str, create_time: int, fmt: Format) -> bytes:
    """Hand the user message just pushed to the agents' tool (addressed back to the user)."""
    fields = [
        ("ToUserName", openid),
        ("FromUserName", gh_id),
        ("CreateTime", create_time),
        ("MsgType", TRANSFER),
    ]
    return xml.build(fields) if fmt == "xml" else _json.encode(dict(fields))


class _JsonEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    # Field order is the envelope's order in WeChat's example; TimeStamp is a JSON number.
    Encrypt: str
    MsgSignature: str
    TimeStamp: int
    Nonce: str


def encrypt_reply(
    cipher: Cipher,
    token: str,
    plaintext: bytes,
    *,
    timestamp: int | str,
    nonce: str,
    fmt: Format,
    random16: bytes | None = None,
) -> bytes:
    """``plaintext`` in the encrypted answer's envelope, signed with ``MsgSignature``.

    ``timestamp`` is unix seconds (now), as an int or its digits; the JSON envelope carries
    it as a number.
    """
    if isinstance(timestamp, str):
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise ValueError(f"timestamp must be unix seconds, got {timestamp[:24]!r}")
        timestamp = int(timestamp)
    encrypt = cipher.encrypt(plaintext, random16=random16)
    signature = sign(token, str(timestamp), nonce, encrypt)
    if fmt == "xml":
        fields = [
            ("Encrypt", encrypt),
            ("MsgSignature", signature),
            ("TimeStamp", timestamp),
            ("Nonce", nonce),
        ]
        return xml.build(fields)
    envelope = _JsonEnvelope(
        Encrypt=encrypt, MsgSignature=signature, TimeStamp=timestamp, Nonce=nonce
    )
    return _json.encode(envelope)


# --- WeChat's side --------------------------------------------------------------------------------


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """What an answer means to WeChat."""

    kind: ReplyKind
    encrypted: bool = False
    reason: str = ""
    """Why an ``invalid`` answer is invalid."""
    to_user: str = ""
    """For a transfer: the openid it names (WeChat expects the pushing user's)."""
    from_user: str = ""
    create_time: int = 0


def read_reply(
    body: bytes,
    *,
    token: str,
    cipher: Cipher | None,
    fmt: FormatChoice,
    mode: Mode | None = None,
) -> Reply:
    """Read an answer as WeChat would; ``mode`` defaults to safe with a cipher, else plain.

    In the safe mode anything but ``success`` or an empty body must be encrypted; in the
    compatible mode either form is read; in the plain mode nothing is decrypted.
    """
    if mode is None:
        mode = "plain" if cipher is None else "safe"
    if body == SUCCESS:
        return Reply(kind="success")
    if not body:
        return Reply(kind="empty")
    try:
        return _read(body, token=token, cipher=cipher, fmt=fmt, mode=mode)
    except WeChatError as exc:
        return Reply(kind="invalid", reason=f"{exc.code}: {exc.detail}")


def _read(
    body: bytes, *, token: str, cipher: Cipher | None, fmt: FormatChoice, mode: Mode
) -> Reply:
    found = codec.detect(body, fmt)
    doc = codec.document(body, found)
    encrypted = "Encrypt" in doc and mode != "plain"
    if encrypted:
        if cipher is None:
            return _invalid("an encrypted answer, but no EncodingAESKey to read it")
        encrypt, signature, nonce = (doc.get(k) for k in ("Encrypt", "MsgSignature", "Nonce"))
        timestamp = _integer(doc.get("TimeStamp"), found)
        if not (isinstance(encrypt, str) and isinstance(signature, str) and isinstance(nonce, str)):
            return _invalid("the envelope needs Encrypt, MsgSignature and Nonce as text")
        if timestamp is None:
            return _invalid("the envelope's TimeStamp is not an integer")
        if not verify(signature, token, str(timestamp), nonce, encrypt):
            return _invalid("MsgSignature does not match")
        inner = cipher.decrypt(encrypt)
        if inner == SUCCESS:
            return Reply(kind="success", encrypted=True)
        if not inner:
            return Reply(kind="empty", encrypted=True)
        found = codec.detect(inner, fmt)
        doc = codec.document(inner, found)
    elif mode == "safe":
        return _invalid("the safe mode needs this answer encrypted")
    if doc.get("MsgType") != TRANSFER:
        return _invalid(f"MsgType must be {TRANSFER}")
    to_user, from_user = doc.get("ToUserName"), doc.get("FromUserName")
    create_time = _integer(doc.get("CreateTime"), found)
    if not (isinstance(to_user, str) and to_user and isinstance(from_user, str) and from_user):
        return _invalid("a transfer needs ToUserName and FromUserName")
    if create_time is None:
        return _invalid("a transfer needs CreateTime as an integer")
    return Reply(
        kind="transfer_customer_service",
        encrypted=encrypted,
        to_user=to_user,
        from_user=from_user,
        create_time=create_time,
    )


def _invalid(reason: str) -> Reply:
    return Reply(kind="invalid", reason=reason)


def _integer(value: Any, found: Format) -> int | None:
    """A non-negative integer as WeChat writes it: a JSON number, or digits as XML text."""
    if found == "json":
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None
