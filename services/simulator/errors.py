"""The simulator's errors: WeChat's API errors it answers with, and its own input errors."""

from __future__ import annotations

import secrets

# WeChat's errmsg texts for the codes the simulator answers with (as WeChat spells them).
ERRMSG: dict[int, str] = {
    -1: "system error",
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40005: "invalid file type",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid appid",
    40033: "invalid charset. please check your request, if include \\uxxxx will create fail!",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41005: "media data missing",
    42001: "access_token expired",
    44002: "empty post data",
    44004: "empty content",
    45001: "media size out of limit",
    45002: "content size out of limit",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    45072: "command field invalid",
    45080: "need sending message to user or recving message from user in the last 30 seconds "
    "before typing",
    45081: "you are already typing",
    45162: "invalid type",
    47001: "data format error",
}


def rid() -> str:
    """A request id in WeChat's shape, for the end of every errmsg."""
    return "-".join(secrets.token_hex(4) for _ in range(3))


class ApiError(Exception):
    """WeChat refused the call: answered as HTTP 200 with ``errcode``/``errmsg``."""

    def __init__(self, errcode: int, detail: str | None = None) -> None:
        self.errcode = errcode
        self.detail = detail if detail is not None else ERRMSG.get(errcode, "error")
        super().__init__(f"{errcode} {self.detail}")

    def body(self) -> dict[str, object]:
        return {"errcode": self.errcode, "errmsg": f"{self.detail} rid: {rid()}"}


class SimRequestError(Exception):
    """A request to the simulator's own /sim/ endpoints is malformed (HTTP 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PushError(Exception):
    """The pusher was asked for something it cannot build (bad key, unknown mode or format)."""
