"""The simulator's own endpoints under ``/sim/``: clock, faults, users, inspection, reset.

These are not WeChat's: malformed requests get HTTP 400 with ``{"error", "message"}``.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec
from aiohttp import web

from services.simulator.api import json_answer, stream_media
from services.simulator.errors import ApiError, SimRequestError
from services.simulator.faults import FaultRule
from services.simulator.keys import STATE


class ClockChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    advance_s: float | None = None
    set: float | None = None


class UserActionBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["message", "enter"] = "message"
    at: float | None = None
    """Unix seconds on the simulator's clock; default now."""


class FaultRules(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rules: list[FaultRule]


T = TypeVar("T")


def _decode(body: bytes, tp: type[T]) -> T:
    try:
        return msgspec.json.decode(body or b"{}", type=tp)
    except msgspec.ValidationError as exc:
        raise SimRequestError("invalid_request", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise SimRequestError("malformed_json", str(exc)) from None


async def get_clock(request: web.Request) -> web.Response:
    return json_answer({"now": request.app[STATE].now()})


async def post_clock(request: web.Request) -> web.Response:
    change = _decode(await request.read(), ClockChange)
    clock = request.app[STATE].clock
    if (change.advance_s is None) == (change.set is None):
        raise SimRequestError("invalid_request", 'give exactly one of "advance_s" and "set"')
    try:
        now = clock.advance(change.advance_s) if change.advance_s is not None else None
        if change.set is not None:
            now = clock.set(change.set)
    except ValueError as exc:
        raise SimRequestError("invalid_request", str(exc)) from None
    return json_answer({"now": now})


async def post_faults(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        raw = msgspec.json.decode(body or b"{}")
    except msgspec.DecodeError as exc:
        raise SimRequestError("malformed_json", str(exc)) from None
    rules = (
        _decode(body, FaultRules).rules
        if isinstance(raw, dict) and "rules" in raw
        else [_decode(body, FaultRule)]
    )
    faults = request.app[STATE].faults
    for rule in rules:
        faults.add(rule)
    return json_answer({"added": len(rules), "rules": faults.view()})


async def get_faults(request: web.Request) -> web.Response:
    return json_answer({"rules": request.app[STATE].faults.view()})


async def delete_faults(request: web.Request) -> web.Response:
    cleared = request.app[STATE].faults.clear(request.query.get("path"))
    return json_answer({"cleared": cleared})


async def get_user(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_answer(state.peek(request.match_info["openid"]).view(state.now()))


async def get_inbox(request: web.Request) -> web.Response:
    state = request.app[STATE]
    openid = request.match_info["openid"]
    messages = [msgspec.to_builtins(item) for item in state.inbox(openid)]
    return json_answer({"openid": openid, "messages": messages})


async def post_user_message(request: web.Request) -> web.Response:
    body = _decode(await request.read(), UserActionBody)
    state = request.app[STATE]
    user = state.user_action(request.match_info["openid"], body.kind, body.at)
    return json_answer(user.view(state.now()))


async def post_media(request: web.Request) -> web.Response:
    """Register an image a user sends, so the MediaId of an image push can be downloaded."""
    state = request.app[STATE]
    try:
        media = state.upload_media(await request.read())
    except ApiError as exc:
        raise SimRequestError("invalid_media", exc.detail) from None
    return json_answer(
        {
            "media_id": media.media_id,
            "created_at": int(media.created_at),
            "pic_url": str(request.url.with_path(f"/sim/pic/{media.media_id}").with_query(None)),
        }
    )


async def get_pic(request: web.Request) -> web.StreamResponse:
    """The ``PicUrl`` of an image push: the image without a token, like WeChat's CDN."""
    state = request.app[STATE]
    try:
        media = state.get_media(request.match_info["media_id"])
    except ApiError:
        raise web.HTTPNotFound(text="no such picture") from None
    return await stream_media(request, media.data, media.content_type, media.filename)


async def get_outcomes(request: web.Request) -> web.Response:
    prefix = request.query.get("prefix", "")
    if not prefix:
        raise SimRequestError("invalid_request", "give ?prefix=, the start of the openids")
    return json_answer(msgspec.to_builtins(request.app[STATE].outcomes(prefix)))


async def get_stats(request: web.Request) -> web.Response:
    return json_answer(request.app[STATE].snapshot())


async def post_reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.reset()
    return json_answer({"reset": True, "now": state.now()})


def error_answer(exc: SimRequestError) -> web.Response:
    return json_answer({"error": exc.code, "message": exc.message}, status=400)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/sim/clock", get_clock)
    app.router.add_post("/sim/clock", post_clock)
    app.router.add_get("/sim/faults", get_faults)
    app.router.add_post("/sim/faults", post_faults)
    app.router.add_delete("/sim/faults", delete_faults)
    app.router.add_get("/sim/users/{openid}", get_user)
    app.router.add_get("/sim/users/{openid}/inbox", get_inbox)
    app.router.add_post("/sim/users/{openid}/message", post_user_message)
    app.router.add_post("/sim/media", post_media)
    app.router.add_get("/sim/pic/{media_id}", get_pic)
    app.router.add_get("/sim/outcomes", get_outcomes)
    app.router.add_get("/sim/stats", get_stats)
    app.router.add_post("/sim/reset", post_reset)
