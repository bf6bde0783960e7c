"""WeChat's AES scheme for encrypted pushes and replies ("WXBizMsgCrypt").

AES-256-CBC with the key from the 43-character EncodingAESKey and IV = key[:16]; the
plaintext is ``random16 || len(msg) as 4 bytes big-endian || msg || appid``, padded PKCS#7
style to a multiple of 32 bytes (the scheme's block, not AES's 16); the ciphertext travels as
standard base64.

Decrypting is strict: every malformed input raises a :class:`DecryptError` naming the
reason. Distinct reasons would be a padding oracle if anyone could submit ciphertexts, which
is why callers check ``msg_signature`` (which needs the token) before they decrypt.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

import msgspec
from cryptography.hazmat.primitives.ciphers import Cipher as _AesCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes

from libs.common.wechat.errors import (
    BadAesKey,
    BadAppid,
    BadBase64,
    BadBlockSize,
    BadLength,
    BadPadding,
    InvalidConfig,
)

BLOCK = 32
"""The scheme's padding block in bytes."""
_HEADER = 20  # 16 random bytes, then the 4-byte length
_KEY_CHARS = re.compile(r"[A-Za-z0-9+/]{43}")


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key that a 43-character EncodingAESKey stands for."""
    if len(encoding_aes_key) != 43:
        raise BadAesKey(f"EncodingAESKey must be 43 characters, got {len(encoding_aes_key)}")
    if not _KEY_CHARS.fullmatch(encoding_aes_key):
        raise BadAesKey("EncodingAESKey must consist of base64 characters (A-Z, a-z, 0-9, +, /)")
    # Lenient on purpose: 43 characters carry 2 surplus bits, which WeChat's own sample key
    # sets; a decoder that insists on canonical trailing bits would refuse real keys.
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:  # cannot happen for 43 valid characters; kept as the scheme's rule
        raise BadAesKey(f"EncodingAESKey must decode to 32 bytes, got {len(key)}")
    return key


class Cipher(msgspec.Struct, frozen=True, kw_only=True):
    """Encrypts and decrypts for one appid; build it once per process with :meth:`from_key`."""

    appid: str
    _appid: bytes
    _aes: _AesCipher[modes.CBC]

    @classmethod
    def from_key(cls, encoding_aes_key: str, appid: str) -> Cipher:
        key = aes_key(encoding_aes_key)
        if not appid or not appid.isascii() or not appid.isprintable():
            raise InvalidConfig("appid must be non-empty printable ASCII")
        return cls(
            appid=appid,
            _appid=appid.encode("ascii"),
            _aes=_AesCipher(algorithms.AES(key), modes.CBC(key[:16])),
        )

    def __repr__(self) -> str:
        # The key must never reach a log line or a traceback.
        return f"Cipher(appid={self.appid!r})"

    def encrypt(self, msg: bytes, *, random16: bytes | None = None) -> str:
        """The base64 ``Encrypt`` value for ``msg``; ``random16`` fixes the random prefix."""
        if random16 is None:
            # ASCII like every sample, in case a peer decodes the whole plaintext as text.
            random16 = secrets.token_hex(8).encode("ascii")
        elif len(random16) != 16:
            raise ValueError(f"random16 must be 16 bytes, got {len(random16)}")
        size = _HEADER + len(msg) + len(self._appid)
        pad = BLOCK - size % BLOCK
        plain = b"".join(
            (random16, len(msg).to_bytes(4, "big"), msg, self._appid, bytes((pad,)) * pad)
        )
        encryptor = self._aes.encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypt: str | bytes) -> bytes:
        """The message inside an ``Encrypt`` value, after checking every layer of it."""
        if isinstance(encrypt, str):
            if not encrypt.isascii():
                raise BadBase64("the ciphertext contains non-ASCII characters")
            encrypt = encrypt.encode("ascii")
        try:
            raw = binascii.a2b_base64(encrypt, strict_mode=True)
        except binascii.Error as exc:
            raise BadBase64(f"the ciphertext is not base64: {exc}") from None
        if not raw or len(raw) % BLOCK:
            raise BadBlockSize(f"{len(raw)} bytes is not a positive multiple of {BLOCK}")
        decryptor = self._aes.decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes((pad,)) * pad:
            raise BadPadding("the padding is not PKCS#7 with a 32-byte block")
        end = len(plain) - pad
        if end < _HEADER:
            raise BadLength(f"{end} bytes cannot hold the 20-byte header")
        msg_end = _HEADER + int.from_bytes(plain[16:_HEADER], "big")
        if msg_end > end:
            raise BadLength(
                f"the length field says {msg_end - _HEADER} bytes, {end - _HEADER} left"
            )
        if plain[msg_end:end] != self._appid:
            raise BadAppid("the message was encrypted for another appid")
        return plain[_HEADER:msg_end]
