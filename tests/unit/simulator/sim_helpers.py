"""Shared constants and calls of the simulator's tests (imported by name: unique module)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp.test_utils import TestClient

START = 1_700_000_000.0
OPENID = "oUser000000000000000000000001"

# The smallest files each format's magic bytes accept.
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 60
GIF = b"GIF89a" + b"\x00" * 60

Client = TestClient[Any, Any]
SEND = "/cgi-bin/message/custom/send"


async def call(
    client: TestClient[Any, Any], path: str, token: str | None, body: Any = None, **query: str
) -> dict[str, Any]:
    """POST a JSON body (or raw bytes) to a WeChat path and return the JSON answer."""
    params = dict(query)
    if token is not None:
        params["access_token"] = token
    # Raw UTF-8 as WeChat wants it (json.dumps would escape non-ASCII as \uXXXX).
    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
    resp = await client.post(path, params=params, data=data)
    assert resp.status == 200
    answer: dict[str, Any] = await resp.json(content_type=None)
    return answer


def text(openid: str = OPENID, content: str = "你好") -> dict[str, Any]:
    return {"touser": openid, "msgtype": "text", "text": {"content": content}}
