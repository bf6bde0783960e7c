"""The read API: ``GET /conversations/{openid}``, and errors mapped to JSON once.

A conversation is every stored message about one user, oldest first: what the user said and
did (``who: user``), what the router decided, and what wxkf replied with the outcome of each
reply folded in (``outcome``: the sender's ``outbound.*`` fact, null while none came yet).
Long conversations come in pages: ``next`` is the ``after`` of the following page.

The history is as complete as what has arrived: a page read early may lack a reply whose
command is still on its way, and a later read shows it.
"""

from __future__ import annotations

import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from examples.extension.db import START, Cursor, Row
from examples.extension.errors import BadQuery, HistoryError, NoConversation
from examples.extension.keys import DB, SETTINGS
from examples.extension.records import Kind, Who, who
from libs.common.observability.logging import hash_openid

log = structlog.get_logger(__name__)

DEFAULT_LIMIT = 200
OPENID_MAX_CHARS = 128
APPID_MAX_CHARS = 64
PARAMETERS = frozenset({"limit", "after", "appid"})


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    at_ms: int
    """The message's own time (unix ms): when the service that made it made it."""
    id: str
    who: Who
    kind: Kind
    type: str
    routing_key: str
    correlation_id: str
    message: msgspec.Raw
    """The whole message, as the shared schema encodes it (``wxkf schema``)."""
    outcome: msgspec.Raw | msgspec.UnsetType | None = msgspec.UNSET
    """Replies only: the ``outbound.*`` fact that settled it; null while pending."""


class Conversation(msgspec.Struct, frozen=True, kw_only=True):
    appid: str
    openid: str
    entries: list[Entry]
    next: str | None
    """Pass as ``after`` for the following page; null when there is none yet."""


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: str
    message: str


_encoder = msgspec.json.Encoder()


async def conversation(request: web.Request) -> web.Response:
    settings, db = request.app[SETTINGS], request.app[DB]
    openid = check_openid(request.match_info["openid"])
    query = request.query
    unknown = sorted(set(query) - PARAMETERS)
    if unknown:
        known = ", ".join(sorted(PARAMETERS))
        raise BadQuery(f"unknown parameter {unknown[0][:40]!r}; known: {known}")
    limit = parse_limit(query.get("limit"), maximum=settings.history_page_max)
    after = parse_cursor(query.get("after"))
    appid = check_appid(query.get("appid", settings.appid))
    page = await db.conversation(appid, openid, after=after or START, limit=limit)
    if not page.rows and after is None:
        raise NoConversation(f"nothing is stored for this openid under appid {appid}")
    body = Conversation(
        appid=appid,
        openid=openid,
        entries=[entry_of(row) for row in page.rows],
        next=page.next.token() if page.next else None,
    )
    log.debug("history.read", openid=hash_openid(openid), entries=len(body.entries))
    return web.Response(body=_encoder.encode(body), content_type="application/json")


def entry_of(row: Row) -> Entry:
    return Entry(
        at_ms=row.time_ms,
        id=row.id,
        who=who(row.kind),
        kind=row.kind,
        type=row.type,
        routing_key=row.routing_key,
        correlation_id=row.correlation_id,
        message=msgspec.Raw(row.body.encode()),
        outcome=_outcome(row),
    )


def _outcome(row: Row) -> msgspec.Raw | msgspec.UnsetType | None:
    if row.kind not in ("reply", "typing"):
        return msgspec.UNSET
    return None if row.outcome is None else msgspec.Raw(row.outcome.encode())


# --- parameters ---------------------------------------------------------------------------------


def check_openid(raw: str) -> str:
    if not raw or len(raw) > OPENID_MAX_CHARS or not raw.isprintable():
        raise BadQuery(f"openid must be 1 to {OPENID_MAX_CHARS} printable characters")
    return raw


def check_appid(raw: str) -> str:
    if not raw or len(raw) > APPID_MAX_CHARS or not raw.isprintable():
        raise BadQuery(f"appid must be 1 to {APPID_MAX_CHARS} printable characters")
    return raw


def parse_limit(raw: str | None, *, maximum: int) -> int:
    if raw is None:
        return min(DEFAULT_LIMIT, maximum)
    value = _int(raw, 1, maximum)
    if value is None:
        raise BadQuery(f"limit must be a whole number from 1 to {maximum}, got {raw[:20]!r}")
    return value


def parse_cursor(raw: str | None) -> Cursor | None:
    """``<time_ms>.<seq>`` as given in ``next``; None when absent."""
    if raw is None:
        return None
    time_ms, dot, seq = raw.partition(".")
    # SQLite's integers are 64-bit: anything beyond could not have come from a page.
    at, position = _int(time_ms, -(2**63), 2**63 - 1), _int(seq, 0, 2**63 - 1)
    if not dot or at is None or position is None:
        raise BadQuery(f"after must be the 'next' of an earlier page, got {raw[:40]!r}")
    return Cursor(time_ms=at, seq=position)


def _int(text: str, lo: int, hi: int) -> int | None:
    """``text`` as a plain ASCII decimal within ``[lo, hi]``, else None."""
    digits = text.removeprefix("-")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        return None
    value = int(text)
    return value if lo <= value <= hi else None


# --- the HTTP edge ------------------------------------------------------------------------------


def error_response(exc: HistoryError) -> web.Response:
    body = ErrorBody(error=exc.code, message=exc.message)
    return web.Response(
        status=exc.http_status, body=_encoder.encode(body), content_type="application/json"
    )


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HistoryError as exc:
        log.info("history.refused", error=exc.code, route=_route(request))
        return error_response(exc)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
