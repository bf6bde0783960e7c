"""The HTTP edge of the internal API: the bearer token, and errors mapped to JSON once."""

from __future__ import annotations

import hmac

import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from services.media.errors import InvalidToken, MediaError, MissingToken
from services.media.keys import SETTINGS

log = structlog.get_logger(__name__)

API_PREFIX = "/v1/"


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: str
    message: str
    errcode: int | None = None
    retryable: bool = False


_encoder = msgspec.json.Encoder()


def error_response(exc: MediaError) -> web.Response:
    body = ErrorBody(
        error=exc.code, message=exc.message, errcode=exc.errcode, retryable=exc.retryable
    )
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    return web.Response(
        status=exc.http_status,
        body=_encoder.encode(body),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MediaError as exc:
        log.info("media.refused", route=_route(request), error=exc.code, errcode=exc.errcode)
        resp = error_response(exc)
        if request.body_exists and not request.content.is_eof():
            # A refused upload still streaming in: close rather than read the rest to drain it.
            resp.force_close()
        return resp


@web.middleware
async def internal_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    expected = request.app[SETTINGS].internal_token
    if expected and request.path.startswith(API_PREFIX):
        given = _bearer(request.headers.get("Authorization", ""))
        if given is None:
            raise MissingToken("this API needs 'Authorization: Bearer <WXKF_INTERNAL_TOKEN>'")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise InvalidToken("the bearer token is not this service's internal token")
    return await handler(request)


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"
