"""WeChat's signatures: SHA-1 of the sorted, concatenated parts, as lowercase hex.

The same function signs the URL check and plain pushes (token, timestamp, nonce) and the
encrypted modes (token, timestamp, nonce, Encrypt). Sorting ``str`` by code point is the same
as sorting their UTF-8 bytes, which is the order WeChat specifies.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(*parts: str) -> str:
    """The lowercase hex SHA-1 of ``parts`` sorted and joined with no separator."""
    digest = hashlib.sha1("".join(sorted(parts)).encode())  # noqa: S324 - the scheme is WeChat's
    return digest.hexdigest()


def verify(signature: str, *parts: str) -> bool:
    """True when ``signature`` is the signature of ``parts``, compared in constant time."""
    # compare_digest refuses non-ASCII str; such a signature cannot match a hex digest anyway.
    if not signature.isascii():
        return False
    return hmac.compare_digest(sign(*parts), signature)
