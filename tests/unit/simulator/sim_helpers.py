"""Shared constants and calls of the simulator's tests (imported by name: unique module)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestClient

from libs.common.wechat import replies
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.push import OpenedPush, PushConfig, open_push, verify_url
from services.simulator.config import DEMO_AES_KEY, DEMO_APPID, DEMO_TOKEN

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


CIPHER = Cipher.from_key(DEMO_AES_KEY, DEMO_APPID)


class Ingress:
    """A tiny push endpoint that opens pushes with the project codec and answers by script."""

    def __init__(self, mode: str = "safe", fmt: str = "auto") -> None:
        self.config = PushConfig(
            token=DEMO_TOKEN,
            appid=DEMO_APPID,
            cipher=CIPHER if mode != "plain" else None,
            mode=mode,  # type: ignore[arg-type]
            fmt=fmt,  # type: ignore[arg-type]
        )
        self.script: list[str] = []
        self.received: list[tuple[dict[str, str], bytes, str]] = []
        self.opened: list[OpenedPush] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        query = dict(request.query)
        self.received.append((query, body, request.headers.get("Content-Type", "")))
        opened = open_push(query, body, config=self.config, now=time.time())
        self.opened.append(opened)
        action = self.script.pop(0) if self.script else "success"
        msg = opened.message
        if action == "slow":
            await self.release.wait()
            return web.Response(text="success")
        if action == "500":
            return web.Response(status=500, text="oops")
        if action == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if action == "garbage":
            return web.Response(text="ok")
        if action == "empty":
            return web.Response(body=b"")
        transfer = replies.transfer(msg.from_user, msg.to_user, msg.create_time, opened.fmt)
        if action == "transfer":
            return web.Response(body=self.encrypted(opened, transfer))
        if action == "plain_transfer":
            return web.Response(body=transfer)
        if action == "transfer_other":
            other = replies.transfer("oSomeoneElse", msg.to_user, msg.create_time, opened.fmt)
            return web.Response(body=self.encrypted(opened, other))
        return web.Response(text="success")

    def encrypted(self, opened: OpenedPush, plaintext: bytes) -> bytes:
        return replies.encrypt_reply(
            CIPHER,
            DEMO_TOKEN,
            plaintext,
            timestamp=int(time.time()),
            nonce=opened.nonce,
            fmt=opened.fmt,
        )

    async def verify(self, request: web.Request) -> web.Response:
        return web.Response(text=verify_url(dict(request.query), DEMO_TOKEN))


def ingress_app(endpoint: Ingress) -> web.Application:
    app = web.Application()
    app.router.add_post("/wechat", endpoint.handle)
    app.router.add_get("/wechat", endpoint.verify)
    return app
