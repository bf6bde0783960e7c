"""The simulated WeChat API: the paths and JSON shapes of api.weixin.qq.com (WECHAT.md §7–§10).

Handlers read the request and call :class:`SimState`; refusals are :class:`ApiError`s that
the edge middleware (``app.py``) answers as WeChat does: HTTP 200 with errcode and errmsg.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import BodyPartReader, web

from services.simulator.errors import ApiError
from services.simulator.keys import STATE
from services.simulator.messages import read_object

TOKEN = "/cgi-bin/token"  # noqa: S105 - a URL path, not a credential
STABLE_TOKEN = "/cgi-bin/stable_token"  # noqa: S105 - a URL path, not a credential
SEND = "/cgi-bin/message/custom/send"
TYPING = "/cgi-bin/message/custom/typing"
BUSINESS_TYPING = "/cgi-bin/message/custom/business/typing"
UPLOAD = "/cgi-bin/media/upload"
GET_MEDIA = "/cgi-bin/media/get"

JSON_CONTENT_TYPE = "application/json; encoding=utf-8"
_CHUNK = 64 * 1024


def json_answer(data: dict[str, Any], *, status: int = 200) -> web.Response:
    # msgspec writes raw UTF-8, never \u escapes: what WeChat sends and wants.
    return web.Response(
        body=msgspec.json.encode(data), status=status, headers={"Content-Type": JSON_CONTENT_TYPE}
    )


def ok() -> web.Response:
    return json_answer({"errcode": 0, "errmsg": "ok"})


async def token(request: web.Request) -> web.Response:
    q = request.query
    value, expires_in = request.app[STATE].get_token(
        grant_type=q.get("grant_type", ""), appid=q.get("appid", ""), secret=q.get("secret", "")
    )
    return json_answer({"access_token": value, "expires_in": expires_in})


async def stable_token(request: web.Request) -> web.Response:
    data = read_object(await request.read())
    fields = {}
    for name in ("grant_type", "appid", "secret"):
        value = data.get(name, "")
        if not isinstance(value, str):
            raise ApiError(47001, f"data format error: {name!r} must be a string")
        fields[name] = value
    force = data.get("force_refresh", False)
    if not isinstance(force, bool):
        raise ApiError(47001, "data format error: 'force_refresh' must be true or false")
    value, expires_in = request.app[STATE].get_stable_token(**fields, force_refresh=force)
    return json_answer({"access_token": value, "expires_in": expires_in})


async def send(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.check_token(request.query.get("access_token"))
    state.send(await request.read())
    return ok()


async def typing(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.check_token(request.query.get("access_token"))
    state.typing(await request.read())
    return ok()


async def _media_part(request: web.Request, limit: int) -> tuple[bytes, str]:
    """The bytes and file name of the multipart file part ``media``; 41005 without one, 45001
    past limit."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(41005)
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "media" or not part.filename:
                await part.release()
                continue
            chunks: list[bytes] = []
            size = 0
            while chunk := await part.read_chunk(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ApiError(45001)
                chunks.append(chunk)
            return b"".join(chunks), part.filename
    except ValueError:
        # aiohttp's multipart reader says ValueError for a broken boundary or part header.
        raise ApiError(41005, "media data missing: malformed multipart body") from None
    raise ApiError(41005)


async def upload(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.check_token(request.query.get("access_token"))
    if request.query.get("type") != "image":
        raise ApiError(40004)
    data, filename = await _media_part(request, state.config.media_max_bytes)
    media = state.upload_media(data, filename=filename)
    return json_answer(
        {
            "errcode": 0,
            "errmsg": "ok",
            "type": "image",
            "media_id": media.media_id,
            "created_at": int(media.created_at),
        }
    )


async def get_media(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.check_token(request.query.get("access_token"))
    media_id = request.query.get("media_id")
    if media_id is None and request.method == "POST" and request.can_read_body:
        # Some SDKs POST {"media_id": ...}; WeChat accepts it.
        found = read_object(await request.read()).get("media_id")
        media_id = found if isinstance(found, str) else None
    media = state.get_media(media_id)
    return await stream_media(request, media.data, media.content_type, media.filename)


async def stream_media(
    request: web.Request, data: bytes, content_type: str, filename: str
) -> web.StreamResponse:
    """The bytes with the headers WeChat's media download sends (WECHAT.md §9.2)."""
    resp = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-cache, must-revalidate",
        }
    )
    resp.content_length = len(data)
    resp.force_close()
    await resp.prepare(request)
    view = memoryview(data)
    for start in range(0, len(data), _CHUNK):
        await resp.write(view[start : start + _CHUNK])
    await resp.write_eof()
    return resp


def add_routes(app: web.Application) -> None:
    app.router.add_get(TOKEN, token)
    app.router.add_post(STABLE_TOKEN, stable_token)
    app.router.add_post(SEND, send)
    app.router.add_post(TYPING, typing)
    app.router.add_post(BUSINESS_TYPING, typing)
    app.router.add_post(UPLOAD, upload)
    app.router.add_get(GET_MEDIA, get_media)
    app.router.add_post(GET_MEDIA, get_media)
