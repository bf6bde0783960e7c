"""What the WeChat protocol core raises: one class per reason, each with a stable code.

``code`` is what logs and metrics carry (it never changes once shipped); ``http_status`` is
what the HTTP edge answers. Messages never quote secrets, and quote at most a short prefix of
what was received. WeChat API errcodes are not errors of this package.
"""

from __future__ import annotations

from typing import ClassVar


class WeChatError(Exception):
    """Base of every refusal of this package; carries ``code`` and ``http_status``."""

    code: ClassVar[str] = "wechat_error"
    http_status: ClassVar[int] = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


# --- configuration: raised when a service starts, never in answer to a request ---------------


class InvalidConfig(WeChatError):
    """A protocol setting (appid, mode, format, limits) is unusable."""

    code = "invalid_config"
    http_status = 500


class BadAesKey(InvalidConfig):
    """The EncodingAESKey is not 43 base64 characters that decode to 32 bytes."""

    code = "bad_aes_key"


# --- the request around the message ---------------------------------------------------------


class TooLarge(WeChatError):
    """The body is larger than the configured limit."""

    code = "too_large"
    http_status = 413


class EmptyBody(WeChatError):
    """The body is empty or only whitespace where a document was expected."""

    code = "empty_body"


class UnsupportedFormat(WeChatError):
    """The body is neither XML nor JSON, or not the format this URL is configured for."""

    code = "unsupported_format"
    http_status = 415


class BadQuery(WeChatError):
    """A query parameter WeChat always sends (timestamp, nonce, echostr) is missing or malformed."""

    code = "bad_query"


class BadSignature(WeChatError):
    """``signature`` or ``msg_signature`` is missing or does not match."""

    code = "bad_signature"
    http_status = 401


class ExpiredTimestamp(WeChatError):
    """The signed timestamp is further from now than the configured maximum age."""

    code = "expired_timestamp"
    http_status = 401


class PlaintextRefused(WeChatError):
    """An unencrypted push reached a URL configured for the compatible or safe mode."""

    code = "plaintext_refused"
    http_status = 403


class MissingEncrypt(WeChatError):
    """An encrypted push whose envelope has no usable ``Encrypt`` field."""

    code = "missing_encrypt"


# --- the AES scheme ---------------------------------------------------------------------------


class DecryptError(WeChatError):
    """Base of the reasons a ciphertext is refused."""

    code = "decrypt_error"


class BadBase64(DecryptError):
    """The ciphertext is not canonical single-line standard base64."""

    code = "bad_base64"


class BadBlockSize(DecryptError):
    """The decoded ciphertext is empty or not a whole number of 32-byte blocks."""

    code = "bad_block_size"


class BadPadding(DecryptError):
    """The PKCS#7 padding (block 32) is outside 1..32 or its bytes are not all equal."""

    code = "bad_padding"


class BadLength(DecryptError):
    """The decrypted length field points past the end of the plaintext."""

    code = "bad_length"


class BadAppid(DecryptError):
    """The plaintext ends with another appid than ours."""

    code = "bad_appid"
    http_status = 403


# --- the message inside ----------------------------------------------------------------------


class MessageError(WeChatError):
    """Base of the reasons a document is refused as a WeChat message."""

    code = "message_error"


class BadEncoding(MessageError):
    """The document is not valid UTF-8."""

    code = "bad_encoding"


class MalformedXml(MessageError):
    """The document is not well-formed XML, or not WeChat's ``<xml>`` dialect."""

    code = "malformed_xml"


class XmlForbiddenConstruct(MessageError):
    """DOCTYPE, entity declarations or references, or processing instructions."""

    code = "xml_forbidden_construct"


class XmlTooDeep(MessageError):
    """Elements nest deeper than WeChat's documents ever do."""

    code = "xml_too_deep"


class MalformedJson(MessageError):
    """The document is not JSON, or its root is not an object."""

    code = "malformed_json"


class MissingField(MessageError):
    """A field that the message's type requires is absent."""

    code = "missing_field"


class BadField(MessageError):
    """A field has the wrong type, e.g. a float or non-digit string for MsgId."""

    code = "bad_field"


class Unrepresentable(MessageError):
    """A value cannot be written in the requested format (e.g. a control character in XML)."""

    code = "unrepresentable"
