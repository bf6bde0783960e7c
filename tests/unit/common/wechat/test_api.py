"""The WeChat API client: encoding, errors, redaction, media streaming.

Each test serves exactly the answer it needs from a small aiohttp app on a free port (the
simulator's own rules are exercised in the integration tests); what the client sent is
captured and checked byte for byte.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from libs.common.observability.logging import configure
from libs.common.wechat import api
from libs.common.wechat.apierrors import (
    WeChatApiError,
    WeChatBadRequest,
    WeChatUnavailable,
)

TOKEN = "ACCESS-TOKEN-a1b2c3-must-never-leak"
SECRET = "app-secret-0f0f-must-never-leak"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 300_000

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Seen:
    """What the fake API received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes, dict[str, str]]] = []
        self.forms: list[dict[str, Any]] = []
        """Multipart bodies: each file field as (filename, content type, bytes)."""


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def serve(seen: Seen) -> AsyncIterator[Callable[..., Awaitable[api.ApiClient]]]:
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(route: Route, *, timeout_s: float = 5.0, **kw: Any) -> api.ApiClient:
        async def record(request: web.Request) -> web.StreamResponse:
            if request.content_type == "multipart/form-data":
                form = await request.post()
                seen.forms.append(
                    {
                        name: (f.filename, f.content_type, f.file.read())
                        if isinstance(f, web.FileField)
                        else f
                        for name, f in form.items()
                    }
                )
                body = b""
            else:
                body = await request.read()
            seen.requests.append((request.path, dict(request.query), body, dict(request.headers)))
            return await route(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return api.ApiClient(session, base_url=str(server.make_url("")), timeout_s=timeout_s, **kw)

    yield start
    for session in sessions:
        await session.close()
    for server in servers:
        await server.close()


def ok(extra: dict[str, Any] | None = None) -> Route:
    async def route(request: web.Request) -> web.Response:
        return web.json_response({"errcode": 0, "errmsg": "ok", **(extra or {})})

    return route


def errcode(code: int, msg: str) -> Route:
    async def route(request: web.Request) -> web.Response:
        return web.json_response({"errcode": code, "errmsg": msg})

    return route


# --- encoding ----------------------------------------------------------------------------------


def test_encode_writes_non_ascii_raw_never_escaped() -> None:
    raw = api.encode_json(api.text("o1", "你好，世界 😀 «ß» \u2028"), path=api.SEND_PATH)
    assert "你好，世界 😀 «ß»".encode() in raw
    assert b"\\u" not in raw
    assert msgspec.json.decode(raw)["text"]["content"] == "你好，世界 😀 «ß» \u2028"


def test_encode_keeps_newlines_tabs_and_a_literal_backslash_u() -> None:
    raw = api.encode_json(api.text("o1", "line\n\ttab \\u4f60 C:\\\\users"), path=api.SEND_PATH)
    assert msgspec.json.decode(raw)["text"]["content"] == "line\n\ttab \\u4f60 C:\\\\users"


@pytest.mark.parametrize("content", ["bell\x07", "\x00", "esc\x1b[0m", "\x1f"])
def test_encode_refuses_control_characters_wechat_would_reject(content: str) -> None:
    with pytest.raises(WeChatBadRequest, match="control characters") as info:
        api.encode_json(api.text("o1", content), path=api.SEND_PATH)
    assert info.value.kind == "permanent"
    assert info.value.path == api.SEND_PATH


def test_encode_refuses_a_lone_surrogate() -> None:
    with pytest.raises(WeChatBadRequest, match="surrogate"):
        api.encode_json(api.text("o1", "bad \ud800"), path=api.SEND_PATH)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (api.text("o1", "hi"), {"touser": "o1", "msgtype": "text", "text": {"content": "hi"}}),
        (
            api.image("o1", "MID"),
            {"touser": "o1", "msgtype": "image", "image": {"media_id": "MID"}},
        ),
        (
            api.link("o1", title="T", description="D", url="https://x", thumb_url="https://t"),
            {
                "touser": "o1",
                "msgtype": "link",
                "link": {
                    "title": "T",
                    "description": "D",
                    "url": "https://x",
                    "thumb_url": "https://t",
                },
            },
        ),
        (
            api.miniprogrampage("o1", title="T", pagepath="pages/a?x=1", thumb_media_id="M"),
            {
                "touser": "o1",
                "msgtype": "miniprogrampage",
                "miniprogrampage": {"title": "T", "pagepath": "pages/a?x=1", "thumb_media_id": "M"},
            },
        ),
    ],
)
def test_bodies_have_wechats_shape(message: api.CustomMessage, expected: dict[str, Any]) -> None:
    assert msgspec.json.decode(api.encode_json(message, path=api.SEND_PATH)) == expected


# --- send ---------------------------------------------------------------------------------------


async def test_send_posts_raw_utf8_with_the_token_in_the_query(serve: Any, seen: Seen) -> None:
    client = await serve(ok())
    latency = await client.send(TOKEN, api.text("oUser", "您好 😀"))
    assert latency > 0
    path, query, body, headers = seen.requests[0]
    assert path == api.SEND_PATH
    assert query == {"access_token": TOKEN}
    assert body == '{"msgtype":"text","touser":"oUser","text":{"content":"您好 😀"}}'.encode()
    assert headers["Content-Type"].startswith("application/json")


async def test_a_good_call_is_logged_only_at_debug(serve: Any) -> None:
    client = await serve(ok())
    config, root = structlog.get_config(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure("sender", fmt="json", level="info", stream=io.StringIO())
        with capture_logs() as quiet:
            await client.send(TOKEN, api.text("oUser", "hi"))
        configure("sender", fmt="json", level="debug", stream=io.StringIO())
        with capture_logs() as loud:
            await client.send(TOKEN, api.text("oUser", "hi"))
    finally:
        structlog.configure(**config)
        root.handlers[:] = handlers
        root.setLevel(level)
    assert quiet == []
    assert [(e["event"], e["api"], e["log_level"]) for e in loud] == [
        ("wechat.call", "send", "debug")
    ]
    assert TOKEN not in repr(loud)


async def test_an_errcode_becomes_a_typed_error_with_rid_and_no_token(serve: Any) -> None:
    msg = (
        "invalid credential, access_token is invalid or not latest "
        f"rid: 6571-0d2e-7a3c access_token={TOKEN}"
    )
    client = await serve(errcode(40001, msg))
    with capture_logs() as logs, pytest.raises(WeChatApiError) as info:
        await client.send(TOKEN, api.text("oUser", "hi"))
    err = info.value
    assert (err.errcode, err.kind, err.name, err.path) == (
        40001,
        "token",
        "invalid_credential",
        api.SEND_PATH,
    )
    assert err.rid == "6571-0d2e-7a3c"
    assert TOKEN not in str(err)
    assert TOKEN not in err.errmsg
    assert TOKEN not in repr(err.args)
    assert logs
    assert all(TOKEN not in repr(entry) for entry in logs)
    assert logs[0]["event"] == "wechat.call_failed"
    assert logs[0]["errcode"] == 40001


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (-1, "transient"),
        (45009, "transient"),
        (45015, "window"),
        (40007, "media"),
        (40003, "permanent"),
    ],
)
async def test_errcode_kinds(serve: Any, code: int, kind: str) -> None:
    client = await serve(errcode(code, "x"))
    with pytest.raises(WeChatApiError) as info:
        await client.send(TOKEN, api.text("oUser", "hi"))
    assert info.value.kind == kind
    assert info.value.ambiguous is False


async def test_http_5xx_is_transient_and_not_ambiguous(serve: Any) -> None:
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(
            status=502, text="<html>502 Bad Gateway</html>", content_type="text/html"
        )

    client = await serve(bad_gateway)
    with pytest.raises(WeChatUnavailable) as info:
        await client.send(TOKEN, api.text("oUser", "hi"))
    assert (info.value.status, info.value.kind, info.value.ambiguous) == (502, "transient", False)
    assert info.value.errcode is None


async def test_a_200_that_is_not_json_is_ambiguous(serve: Any) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    client = await serve(page)
    with pytest.raises(WeChatUnavailable) as info:
        await client.send(TOKEN, api.text("oUser", "hi"))
    assert info.value.ambiguous is True


async def test_an_oversized_answer_is_refused(serve: Any) -> None:
    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"{" + b" " * (api.MAX_REPLY_BYTES + 10) + b"}")

    client = await serve(huge)
    with pytest.raises(WeChatUnavailable, match="larger than"):
        await client.send(TOKEN, api.text("oUser", "hi"))


@pytest.mark.parametrize("size", [10, api.MAX_REPLY_BYTES + 10])
async def test_an_answer_without_a_length_is_read_up_to_the_cap(serve: Any, size: int) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"errcode":0,"errmsg":"ok"')
        await response.write(b" " * size + b"}")
        return response

    client = await serve(chunked)
    if size > api.MAX_REPLY_BYTES:
        with pytest.raises(WeChatUnavailable, match="larger than") as info:
            await client.send(TOKEN, api.text("oUser", "hi"))
        assert info.value.ambiguous
    else:
        assert await client.send(TOKEN, api.text("oUser", "hi")) > 0


async def test_a_timeout_after_sending_is_ambiguous_and_never_quotes_the_url(serve: Any) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"errcode": 0})

    client = await serve(hang, timeout_s=0.2)
    try:
        with capture_logs() as logs, pytest.raises(WeChatUnavailable) as info:
            await client.send(TOKEN, api.text("oUser", "hi"))
    finally:
        release.set()
    assert info.value.ambiguous is True
    assert "timeout" in info.value.reason
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert TOKEN not in str(info.value)
    assert all(TOKEN not in repr(entry) for entry in logs)


async def test_a_connection_dropped_after_sending_is_ambiguous(serve: Any) -> None:
    async def drop(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    client = await serve(drop)
    with pytest.raises(WeChatUnavailable) as info:
        await client.send(TOKEN, api.text("oUser", "hi"))
    assert info.value.ambiguous is True


async def test_a_refused_connection_is_not_ambiguous() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        client = api.ApiClient(session, base_url=f"http://127.0.0.1:{port}", timeout_s=2)
        with pytest.raises(WeChatUnavailable) as info:
            await client.send(TOKEN, api.text("oUser", "hi"))
    assert info.value.ambiguous is False
    assert TOKEN not in str(info.value)


async def test_a_bad_body_is_refused_before_any_call(serve: Any, seen: Seen) -> None:
    client = await serve(ok())
    with pytest.raises(WeChatBadRequest):
        await client.send(TOKEN, api.text("oUser", "\x01"))
    assert seen.requests == []


# --- typing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", api.TYPING_PATHS)
async def test_typing_uses_the_configured_path(serve: Any, seen: Seen, path: str) -> None:
    client = await serve(ok(), typing_path=path)
    await client.typing(TOKEN, "oUser", "CancelTyping")
    assert seen.requests[0][0] == path
    assert msgspec.json.decode(seen.requests[0][2]) == {
        "touser": "oUser",
        "command": "CancelTyping",
    }


# --- stable token -------------------------------------------------------------------------------


async def test_stable_token_posts_json_and_keeps_the_secret_out_of_errors(
    serve: Any, seen: Seen
) -> None:
    answers = iter(
        [
            {"access_token": "T1", "expires_in": 7200},
            {"errcode": 40125, "errmsg": "invalid appsecret rid: 1-2-3"},
        ]
    )

    async def route(request: web.Request) -> web.Response:
        return web.json_response(next(answers))

    client = await serve(route)
    grant = await client.stable_token("wxAPP", SECRET, force_refresh=True)
    assert (grant.access_token, grant.expires_in) == ("T1", 7200)
    assert "T1" not in repr(grant)
    path, query, body, _ = seen.requests[0]
    assert (path, query) == (api.STABLE_TOKEN_PATH, {})
    assert msgspec.json.decode(body) == {
        "grant_type": "client_credential",
        "appid": "wxAPP",
        "secret": SECRET,
        "force_refresh": True,
    }
    with capture_logs() as logs, pytest.raises(WeChatApiError) as info:
        await client.stable_token("wxAPP", SECRET)
    assert info.value.errcode == 40125
    assert info.value.kind == "permanent"
    assert SECRET not in str(info.value)
    assert all(SECRET not in repr(entry) for entry in logs)


async def test_stable_token_without_a_token_is_an_error(serve: Any) -> None:
    client = await serve(ok())
    with pytest.raises(WeChatUnavailable, match="without access_token"):
        await client.stable_token("wxAPP", SECRET)


# --- media upload -------------------------------------------------------------------------------


@pytest.mark.parametrize("created_at", [1672500000, "1672500000"])
async def test_upload_sends_field_media_with_a_matching_filename(
    serve: Any, seen: Seen, created_at: object
) -> None:
    client = await serve(ok({"type": "image", "media_id": "MID", "created_at": created_at}))
    uploaded = await client.upload_media(TOKEN, PNG)
    assert uploaded == api.UploadedMedia(media_id="MID", type="image", created_at=1672500000)
    path, query, _, _ = seen.requests[0]
    assert (path, query) == (api.UPLOAD_PATH, {"access_token": TOKEN, "type": "image"})
    assert seen.forms[0]["media"] == ("media.png", "image/png", PNG)


async def test_upload_refuses_bytes_that_are_not_an_image(serve: Any, seen: Seen) -> None:
    client = await serve(ok())
    with pytest.raises(WeChatBadRequest, match="JPG, PNG or GIF"):
        await client.upload_media(TOKEN, b"%PDF-1.7")
    assert seen.requests == []


async def test_upload_errors_are_typed(serve: Any) -> None:
    client = await serve(errcode(45001, "media size out of limit"))
    with pytest.raises(WeChatApiError) as info:
        await client.upload_media(TOKEN, JPEG)
    assert info.value.errcode == 45001


# --- media download -----------------------------------------------------------------------------


async def test_get_media_streams_the_bytes(serve: Any, seen: Seen) -> None:
    async def media(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "image/jpeg",
                "Content-disposition": 'attachment; filename="MID.jpg"',
                "Content-Length": str(len(JPEG)),
            }
        )
        await resp.prepare(request)
        for i in range(0, len(JPEG), 50_000):
            await resp.write(JPEG[i : i + 50_000])
        await resp.write_eof()
        return resp

    client = await serve(media)
    async with await client.get_media(TOKEN, "MID") as download:
        assert download.content_type == "image/jpeg"
        assert download.content_length == len(JPEG)
        assert download.filename == "MID.jpg"
        received = b"".join([chunk async for chunk in download.chunks()])
    assert received == JPEG
    assert seen.requests[0][:2] == (api.GET_MEDIA_PATH, {"access_token": TOKEN, "media_id": "MID"})


@pytest.mark.parametrize(
    "content_type", ["application/json; encoding=utf-8", "text/plain", "application/json"]
)
async def test_get_media_raises_wechats_json_error(serve: Any, content_type: str) -> None:
    async def error(request: web.Request) -> web.Response:
        return web.Response(
            body=b' {"errcode":40007,"errmsg":"invalid media_id rid: aa-bb"}',
            headers={"Content-Type": content_type},
        )

    client = await serve(error)
    with pytest.raises(WeChatApiError) as info:
        await client.get_media(TOKEN, "MID")
    assert (info.value.errcode, info.value.kind, info.value.rid) == (40007, "media", "aa-bb")


async def test_get_media_token_errors_are_token_kind(serve: Any) -> None:
    client = await serve(errcode(42001, "access_token expired"))
    with pytest.raises(WeChatApiError) as info:
        await client.get_media(TOKEN, "MID")
    assert info.value.kind == "token"


async def test_get_media_text_that_is_not_json_is_streamed_whole(serve: Any) -> None:
    payload = b"plain words, not an error " * 5000

    async def text(request: web.Request) -> web.Response:
        return web.Response(body=payload, headers={"Content-Type": "text/plain"})

    client = await serve(text)
    async with await client.get_media(TOKEN, "MID") as download:
        received = b"".join([chunk async for chunk in download.chunks()])
    assert received == payload


async def test_get_media_http_error(serve: Any) -> None:
    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503)

    client = await serve(unavailable)
    with pytest.raises(WeChatUnavailable) as info:
        await client.get_media(TOKEN, "MID")
    assert info.value.status == 503


def test_image_extension_by_magic_bytes() -> None:
    assert api.image_extension(PNG) == ".png"
    assert api.image_extension(JPEG) == ".jpg"
    assert api.image_extension(b"GIF89a....") == ".gif"
    assert api.image_extension(b"BM....") is None
