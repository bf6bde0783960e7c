"""WeChat API errcodes as data, and the errors a call to WeChat's API raises.

Every errcode belongs to one :data:`ErrorKind`, which decides what a caller does with it:

* ``token``: the access token was refused; re-read the shared token, refresh, retry once.
* ``transient``: WeChat is busy or rate limiting; try again later (backoff). HTTP 5xx answers,
  timeouts and connection errors are not errcodes but belong to the same kind.
* ``window``: outside the reply window or past its count; never retried.
* ``media``: the media id or type is bad (e.g. expired after 3 days); upload again, then retry.
* ``permanent``: the request itself is wrong (openid, content, configuration); never retried.

An errcode missing from the table is ``permanent``: retrying a request nobody understands
only spends quota. Errors carry the API path, never its query (where the access token is)
and never the request body (where the app secret is for the token endpoint).
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

ErrorKind = Literal["token", "transient", "window", "media", "permanent"]


class ApiErrcode(msgspec.Struct, frozen=True, kw_only=True):
    code: int
    name: str
    """A stable snake_case name (metrics labels, logs)."""
    kind: ErrorKind
    meaning: str


def _table(*rows: tuple[int, str, ErrorKind, str]) -> dict[int, ApiErrcode]:
    return {
        code: ApiErrcode(code=code, name=name, kind=kind, meaning=m) for code, name, kind, m in rows
    }


ERRCODES: dict[int, ApiErrcode] = _table(
    (-1, "system_busy", "transient", "system busy; try again later"),
    (40001, "invalid_credential", "token", "access token invalid or not the latest"),
    (40002, "invalid_grant_type", "permanent", "grant_type must be client_credential"),
    (40003, "invalid_openid", "permanent", "the openid is not a user of this mini program"),
    (40004, "invalid_media_type", "media", "invalid media type"),
    (40007, "invalid_media_id", "media", "invalid or expired media_id"),
    (40008, "invalid_message_type", "permanent", "invalid message type"),
    (40013, "invalid_appid", "permanent", "invalid AppID"),
    (40014, "invalid_access_token", "token", "invalid access token"),
    (40033, "invalid_charset", "permanent", "the request contains \\uXXXX escapes"),
    (40101, "missing_parameter", "permanent", "a required parameter is missing"),
    (40125, "invalid_appsecret", "permanent", "invalid AppSecret"),
    (40164, "ip_not_whitelisted", "permanent", "the caller's IP is not in the API whitelist"),
    (40200, "invalid_account_type", "permanent", "invalid account type for typing"),
    (40243, "appsecret_frozen", "permanent", "the AppSecret is frozen"),
    (41001, "missing_access_token", "permanent", "access_token missing"),
    (41005, "missing_media", "permanent", "the upload carries no media file"),
    (42001, "access_token_expired", "token", "access token expired"),
    (44002, "empty_body", "permanent", "empty POST body"),
    (44004, "empty_text", "permanent", "empty text content"),
    (45001, "media_too_large", "permanent", "media file too large"),
    (45002, "content_too_long", "permanent", "message content too long"),
    (45009, "daily_quota_reached", "transient", "API daily quota reached"),
    (45011, "frequency_limited", "transient", "API called too often; pause"),
    (45015, "out_of_window", "window", "outside the reply window (time limit)"),
    (45047, "out_of_count", "window", "the reply window's count is used up"),
    (45072, "invalid_typing_command", "permanent", "typing command is not Typing/CancelTyping"),
    (45080, "typing_needs_exchange", "permanent", "typing needs an exchange in the last 30 s"),
    (45081, "already_typing", "permanent", "typing is already active"),
    (45162, "invalid_type", "permanent", "invalid message type"),
    (47001, "malformed_body", "permanent", "the body is not valid JSON or XML"),
    (48001, "api_unauthorized", "permanent", "API not authorized for this account"),
    (50001, "user_unauthorized", "permanent", "the user has not authorized this API"),
    (50002, "user_limited", "permanent", "the user is limited"),
    (50004, "token_use_banned", "permanent", "access token use banned (punishment)"),
    (61004, "ip_not_whitelisted_legacy", "permanent", "the caller's IP is not whitelisted"),
    (89503, "risky_ip_pending", "permanent", "a risky caller IP awaits confirmation"),
)

TOKEN_ERRCODES: frozenset[int] = frozenset(c for c, e in ERRCODES.items() if e.kind == "token")


def describe(errcode: int) -> ApiErrcode:
    """The table's row, or a ``permanent`` row named ``errcode_<n>`` for an unknown errcode."""
    known = ERRCODES.get(errcode)
    if known is not None:
        return known
    return ApiErrcode(code=errcode, name=f"errcode_{errcode}", kind="permanent", meaning="")


def kind_of(errcode: int) -> ErrorKind:
    return describe(errcode).kind


_RID = re.compile(r"\brid:\s*([0-9A-Za-z-]+)")
# A query string echoed back in errmsg would carry the token; keep it out of errors and logs.
_TOKEN_IN_TEXT = re.compile(r"(access_token=)[^&\s\"']+")


def redact(text: str) -> str:
    """``text`` with any ``access_token=…`` value replaced by ``***``."""
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


def rid_of(errmsg: str) -> str:
    """The request id WeChat appends to errmsg (`` rid: …``), useful for support tickets."""
    found = _RID.search(errmsg)
    return found.group(1) if found else ""


class WeChatCallError(Exception):
    """A call to WeChat's API did not succeed; ``kind`` says what to do about it."""

    kind: ErrorKind
    path: str
    errcode: int | None
    ambiguous: bool
    """True when WeChat may have acted on the request although we saw no answer."""


class WeChatApiError(WeChatCallError):
    """WeChat answered with a non-zero errcode."""

    errcode: int

    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        self.errcode = errcode
        self.errmsg = redact(errmsg)
        self.path = path
        self.rid = rid_of(errmsg)
        self.kind = kind_of(errcode)
        self.name = describe(errcode).name
        self.ambiguous = False
        super().__init__(f"{path}: errcode {errcode} ({self.name}): {self.errmsg}")


class WeChatUnavailable(WeChatCallError):
    """No usable answer: HTTP error status, timeout, dropped or refused connection."""

    def __init__(
        self, path: str, reason: str, *, status: int | None = None, ambiguous: bool = False
    ) -> None:
        self.errcode = None
        self.path = path
        self.reason = reason
        self.status = status
        self.kind = "transient"
        self.ambiguous = ambiguous
        super().__init__(
            f"{path}: {reason}" + (" (WeChat may have acted on it)" if ambiguous else "")
        )


class WeChatBadRequest(WeChatCallError):
    """The request cannot be sent as given (e.g. text WeChat would refuse); nothing was sent."""

    def __init__(self, path: str, reason: str) -> None:
        self.errcode = None
        self.path = path
        self.reason = reason
        self.kind = "permanent"
        self.ambiguous = False
        super().__init__(f"{path}: {reason}")


class TokenUnavailable(Exception):
    """No access token could be obtained now (refresh failed or another replica's took too long).

    ``kind`` is ``transient`` when a later try may work, ``permanent`` for configuration errors
    (bad AppID or secret, IP whitelist): those need a person, but the message is not at fault.
    """

    def __init__(self, reason: str, *, kind: ErrorKind, errcode: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.errcode = errcode
