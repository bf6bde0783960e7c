"""Reading the JSON bodies of the send and typing APIs as WeChat reads them (WECHAT.md §7, §8).

Everything here is pure: a body goes in, a typed request or an :class:`ApiError` comes out.
Media ids are checked by the caller, which holds the media.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from services.simulator.config import SimConfig
from services.simulator.errors import ApiError

MSGTYPES = ("text", "image", "link", "miniprogrampage")
TYPING_COMMANDS = ("Typing", "CancelTyping")

# A \uXXXX escape is one whose backslash is not itself escaped (an odd run of backslashes).
_UNICODE_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[0-9A-Fa-f]{4}")
_OPENID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SendRequest(msgspec.Struct, frozen=True, kw_only=True):
    touser: str
    msgtype: str
    body: dict[str, Any]
    media_ids: tuple[str, ...] = ()
    """Media ids the message refers to; each must be a live temp media id."""


class TypingRequest(msgspec.Struct, frozen=True, kw_only=True):
    touser: str
    command: str


def read_object(body: bytes) -> dict[str, Any]:
    """The checks every JSON API makes on its body, in WeChat's order."""
    if not body.strip():
        raise ApiError(44002)
    if _UNICODE_ESCAPE.search(body):
        raise ApiError(40033)
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise ApiError(47001) from None
    if not isinstance(data, dict):
        raise ApiError(47001)
    return data


def _openid(data: dict[str, Any]) -> str:
    touser = data.get("touser")
    if not isinstance(touser, str) or not _OPENID.fullmatch(touser):
        raise ApiError(40003)
    return touser


def _fields(data: dict[str, Any], msgtype: str) -> dict[str, Any]:
    inner = data.get(msgtype)
    if not isinstance(inner, dict):
        raise ApiError(47001, f"data format error: missing object {msgtype!r}")
    return inner


def _string(inner: dict[str, Any], name: str, *, required: bool) -> str:
    value = inner.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ApiError(47001, f"data format error: {name!r} must be a non-empty string")
    return value


def parse_send(body: bytes, config: SimConfig) -> SendRequest:
    data = read_object(body)
    touser = _openid(data)
    msgtype = data.get("msgtype")
    if not isinstance(msgtype, str) or msgtype not in MSGTYPES:
        raise ApiError(config.bad_type_errcode)
    inner = _fields(data, msgtype)
    media: tuple[str, ...] = ()
    if msgtype == "text":
        content = inner.get("content")
        if content is None or content == "":
            raise ApiError(44004)
        if not isinstance(content, str):
            raise ApiError(47001, "data format error: 'content' must be a string")
        if len(content.encode("utf-8")) > config.text_max_bytes:
            raise ApiError(45002)
    elif msgtype == "image":
        media_id = inner.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise ApiError(40007)
        media = (media_id,)
    elif msgtype == "link":
        _string(inner, "title", required=True)
        _string(inner, "url", required=True)
        _string(inner, "description", required=False)
        _string(inner, "thumb_url", required=False)
    else:  # miniprogrampage
        _string(inner, "title", required=True)
        _string(inner, "pagepath", required=True)
        thumb = inner.get("thumb_media_id")
        if not isinstance(thumb, str) or not thumb:
            raise ApiError(40007)
        media = (thumb,)
    return SendRequest(touser=touser, msgtype=msgtype, body=inner, media_ids=media)


def parse_typing(body: bytes) -> TypingRequest:
    data = read_object(body)
    touser = _openid(data)
    command = data.get("command")
    if command not in TYPING_COMMANDS:
        raise ApiError(45072)
    return TypingRequest(touser=touser, command=command)
