"""A small client for the WeChat API calls wxkf makes: send, typing, stable token, temp media.

One :class:`ApiClient` wraps one shared ``aiohttp.ClientSession`` (its connector sets the
connection limits). Each call is bounded by a timeout, puts ``access_token`` in the query
(never in a log line or an error: those carry the path only), encodes JSON as raw UTF-8
(WeChat refuses ``\\uXXXX`` escapes with 40033) and turns every failure into a
:class:`~libs.common.wechat.apierrors.WeChatCallError` that says whether WeChat may have acted
on the request anyway (``ambiguous``).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Literal, TypeAlias, TypeVar

import aiohttp
import msgspec
import structlog

from libs.common.wechat import apimetrics
from libs.common.wechat.apierrors import (
    WeChatApiError,
    WeChatBadRequest,
    WeChatCallError,
    WeChatUnavailable,
)

log = structlog.get_logger(__name__)

SEND_PATH = "/cgi-bin/message/custom/send"
TYPING_PATHS = ("/cgi-bin/message/custom/typing", "/cgi-bin/message/custom/business/typing")
"""WeChat's docs name both (WECHAT.md §8); the first is what the SDKs call."""
STABLE_TOKEN_PATH = "/cgi-bin/stable_token"  # noqa: S105 -- a URL path, not a password
UPLOAD_PATH = "/cgi-bin/media/upload"
GET_MEDIA_PATH = "/cgi-bin/media/get"

MAX_REPLY_BYTES = 64 * 1024
"""WeChat's JSON answers are a few hundred bytes; anything far larger is not WeChat."""


# --- request bodies -------------------------------------------------------------------------


class _Text(msgspec.Struct, frozen=True, kw_only=True):
    content: str


class _Media(msgspec.Struct, frozen=True, kw_only=True):
    media_id: str


class _Link(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    description: str
    url: str
    thumb_url: str


class _MiniProgramPage(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    pagepath: str
    thumb_media_id: str


class _Custom(msgspec.Struct, frozen=True, kw_only=True, tag_field="msgtype"):
    touser: str


class TextMessage(_Custom, frozen=True, kw_only=True, tag="text"):
    text: _Text


class ImageMessage(_Custom, frozen=True, kw_only=True, tag="image"):
    image: _Media


class LinkMessage(_Custom, frozen=True, kw_only=True, tag="link"):
    link: _Link


class MiniProgramPageMessage(_Custom, frozen=True, kw_only=True, tag="miniprogrampage"):
    miniprogrampage: _MiniProgramPage


CustomMessage: TypeAlias = TextMessage | ImageMessage | LinkMessage | MiniProgramPageMessage


def text(touser: str, content: str) -> TextMessage:
    return TextMessage(touser=touser, text=_Text(content=content))


def image(touser: str, media_id: str) -> ImageMessage:
    return ImageMessage(touser=touser, image=_Media(media_id=media_id))


def link(touser: str, *, title: str, description: str, url: str, thumb_url: str) -> LinkMessage:
    body = _Link(title=title, description=description, url=url, thumb_url=thumb_url)
    return LinkMessage(touser=touser, link=body)


def miniprogrampage(
    touser: str, *, title: str, pagepath: str, thumb_media_id: str
) -> MiniProgramPageMessage:
    page = _MiniProgramPage(title=title, pagepath=pagepath, thumb_media_id=thumb_media_id)
    return MiniProgramPageMessage(touser=touser, miniprogrampage=page)


TypingCommand = Literal["Typing", "CancelTyping"]


class _TypingBody(msgspec.Struct, frozen=True, kw_only=True):
    touser: str
    command: TypingCommand


class _StableTokenBody(msgspec.Struct, frozen=True, kw_only=True):
    grant_type: str = "client_credential"
    appid: str
    secret: str
    force_refresh: bool


# --- answers ----------------------------------------------------------------------------------


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    errcode: int = 0
    errmsg: str = ""


class TokenGrant(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    expires_in: int

    def __repr__(self) -> str:
        return f"TokenGrant(access_token='***', expires_in={self.expires_in})"


class _TokenAnswer(_Answer, frozen=True, kw_only=True):
    access_token: str = ""
    expires_in: int = 0


class UploadedMedia(msgspec.Struct, frozen=True, kw_only=True):
    media_id: str
    type: str
    created_at: int
    """Unix seconds; the media_id is valid for 3 days from then."""


class _UploadAnswer(_Answer, frozen=True, kw_only=True):
    media_id: str = ""
    type: str = ""
    # A number in WeChat's table, a string in some of its examples (WECHAT.md §9.1).
    created_at: int | str = 0


A = TypeVar("A", bound=_Answer)
_answer_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls) for cls in (_Answer, _TokenAnswer, _UploadAnswer)
}
_encoder = msgspec.json.Encoder()

# A ``\u`` escape preceded by an even number of backslashes (zero included): an escape that
# msgspec wrote for a control character, as opposed to a user's literal backslash-u.
_ESCAPE = re.compile(rb"(?:^|[^\\])(?:\\\\)*\\u")


def encode_json(body: msgspec.Struct, *, path: str) -> bytes:
    """JSON as raw UTF-8; raise :class:`WeChatBadRequest` for text WeChat would refuse.

    msgspec writes non-ASCII characters raw, but control characters other than tab, newline,
    return, backspace and form feed can only be written as ``\\u00XX``, which WeChat refuses
    (40033); lone surrogates cannot be encoded at all.
    """
    try:
        raw = _encoder.encode(body)
    except UnicodeEncodeError:
        raise WeChatBadRequest(path, "text contains a lone surrogate (not valid UTF-8)") from None
    if _ESCAPE.search(raw):
        raise WeChatBadRequest(
            path, "text contains control characters WeChat refuses (U+0000-U+001F)"
        )
    return raw


def image_extension(data: bytes) -> str | None:
    """``.jpg``, ``.png`` or ``.gif`` by magic bytes: WeChat wants the filename to match."""
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return ".gif"
    return None


_CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".gif": "image/gif"}
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


# --- media download ---------------------------------------------------------------------------


class MediaDownload:
    """An open temp-media download: stream :meth:`chunks`, then :meth:`close` (or async with)."""

    def __init__(self, response: aiohttp.ClientResponse, *, prefix: bytes = b"") -> None:
        self.response = response
        self._prefix = prefix

    @property
    def content_type(self) -> str:
        return self.response.headers.get("Content-Type", "application/octet-stream")

    @property
    def content_length(self) -> int | None:
        return self.response.content_length

    @property
    def filename(self) -> str | None:
        return (
            self.response.content_disposition.filename
            if self.response.content_disposition
            else None
        )

    @property
    def content_disposition(self) -> str | None:
        """WeChat's Content-Disposition as sent, to pass on unchanged (a relay need not parse
        it for :attr:`filename`)."""
        return self.response.headers.get("Content-Disposition")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (after the bytes read ahead to look for an error), never
        re-cut into fixed sizes: re-cutting would copy every chunk."""
        if self._prefix:
            yield self._prefix
        async for chunk in self.response.content.iter_any():
            yield chunk

    def close(self) -> None:
        self.response.release()

    async def __aenter__(self) -> MediaDownload:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- the client -------------------------------------------------------------------------------


class ApiClient:
    """WeChat's API over one shared session; every method raises ``WeChatCallError`` on failure."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        typing_path: str = TYPING_PATHS[0],
        service: str = "wechat",
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        # A connect timeout of its own tells "never sent" apart from "sent, no answer".
        connect = connect_timeout_s if connect_timeout_s is not None else min(timeout_s, 3.0)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect)
        # A download may take longer than a call as a whole; only a stalled read is a failure.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect, sock_read=timeout_s
        )
        self.typing_path = typing_path
        self._service = service

    async def send(self, token: str, message: CustomMessage) -> float:
        """Send one customer service message; the seconds WeChat took."""
        body = encode_json(message, path=SEND_PATH)
        _, latency = await self._json_call("send", SEND_PATH, _Answer, token=token, body=body)
        return latency

    async def typing(self, token: str, touser: str, command: TypingCommand = "Typing") -> float:
        body = encode_json(_TypingBody(touser=touser, command=command), path=self.typing_path)
        _, latency = await self._json_call(
            "typing", self.typing_path, _Answer, token=token, body=body
        )
        return latency

    async def stable_token(
        self, appid: str, secret: str, *, force_refresh: bool = False
    ) -> TokenGrant:
        """``POST /cgi-bin/stable_token``; errors never carry the secret (it is in the body)."""
        body = encode_json(
            _StableTokenBody(appid=appid, secret=secret, force_refresh=force_refresh),
            path=STABLE_TOKEN_PATH,
        )
        answer, _ = await self._json_call(
            "stable_token", STABLE_TOKEN_PATH, _TokenAnswer, token=None, body=body
        )
        if not answer.access_token or answer.expires_in <= 0:
            raise WeChatUnavailable(STABLE_TOKEN_PATH, "answer without access_token or expires_in")
        return TokenGrant(access_token=answer.access_token, expires_in=answer.expires_in)

    async def upload_media(
        self,
        token: str,
        data: bytes,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        media_type: str = "image",
    ) -> UploadedMedia:
        """Upload temp media (multipart field ``media``); its ``media_id`` lasts 3 days."""
        if filename is None:
            ext = image_extension(data)
            if ext is None:
                raise WeChatBadRequest(UPLOAD_PATH, "media is not a JPG, PNG or GIF image")
            filename = "media" + ext
            content_type = content_type or _CONTENT_TYPES[ext]
        form = aiohttp.FormData()
        form.add_field(
            "media",
            data,
            filename=filename,
            content_type=content_type or "application/octet-stream",
        )
        answer, _ = await self._json_call(
            "upload_media",
            UPLOAD_PATH,
            _UploadAnswer,
            token=token,
            body=form,
            params={"type": media_type},
        )
        try:
            created_at = int(answer.created_at)
        except ValueError:
            created_at = 0
        if not answer.media_id:
            raise WeChatUnavailable(UPLOAD_PATH, "answer without media_id", ambiguous=True)
        return UploadedMedia(
            media_id=answer.media_id, type=answer.type or media_type, created_at=created_at
        )

    async def get_media(self, token: str, media_id: str) -> MediaDownload:
        """Open a temp-media download; the caller streams it and closes it.

        WeChat answers errors with a JSON body (200): recognised by a JSON or plain-text
        Content-Type and a leading ``{``, and raised before anything is returned.
        """
        path = GET_MEDIA_PATH
        start = time.perf_counter()
        try:
            resp = await self._session.get(
                self._base + path,
                params={"access_token": token, "media_id": media_id},
                timeout=self._stream_timeout,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = _unavailable(path, exc)
            self._count("get_media", _result_of(exc), start)
            _log_failure("get_media", failure)
            raise failure from None
        try:
            prefix = await self._check_media_answer(resp, path)
        except WeChatCallError as exc:
            resp.release()
            self._count("get_media", _error_result(exc), start)
            _log_failure("get_media", exc)
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            resp.release()
            failure = _unavailable(path, exc)
            self._count("get_media", _result_of(exc), start)
            _log_failure("get_media", failure)
            raise failure from None
        self._count("get_media", "0", start)
        return MediaDownload(resp, prefix=prefix)

    @staticmethod
    async def _check_media_answer(resp: aiohttp.ClientResponse, path: str) -> bytes:
        """Raise WeChat's JSON error if that is what came; else the bytes read to find out."""
        if resp.status != 200:
            raise WeChatUnavailable(path, f"HTTP {resp.status}", status=resp.status)
        ctype = resp.headers.get("Content-Type", "").lower()
        if not ctype.startswith(("application/json", "text/plain")):
            return b""
        prefix = b""
        while not prefix.strip():
            chunk = await resp.content.read(MAX_REPLY_BYTES)
            if not chunk:
                break
            prefix += chunk
        if not prefix.lstrip().startswith(b"{"):
            return prefix
        rest = await _read_capped(resp, MAX_REPLY_BYTES - len(prefix), path)
        answer = _decode_answer(_Answer, prefix + rest, path)
        # JSON where media was expected is an error even if its errcode says 0.
        raise WeChatApiError(answer.errcode or -1, answer.errmsg or "no media in the answer", path)

    async def _json_call(
        self,
        api: str,
        path: str,
        answer_type: type[A],
        *,
        token: str | None,
        body: bytes | aiohttp.FormData,
        params: dict[str, str] | None = None,
    ) -> tuple[A, float]:
        query = dict(params or {})
        if token is not None:
            query["access_token"] = token
        headers = _JSON_HEADERS if isinstance(body, bytes) else None
        start = time.perf_counter()
        try:
            async with self._session.post(
                self._base + path, params=query, data=body, headers=headers, timeout=self._timeout
            ) as resp:
                raw = await _read_capped(resp, MAX_REPLY_BYTES, path)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            # aiohttp's messages can quote the URL, and with it the token: never pass them on.
            failure = _unavailable(path, exc)
            self._count(api, _result_of(exc), start)
            _log_failure(api, failure)
            raise failure from None
        except WeChatUnavailable as exc:
            self._count(api, "oversized", start)
            _log_failure(api, exc)
            raise
        latency = time.perf_counter() - start
        if status != 200:
            unavailable = WeChatUnavailable(path, f"HTTP {status}", status=status)
            self._count(api, _status_result(status), start)
            _log_failure(api, unavailable)
            raise unavailable
        try:
            answer = _decode_answer(answer_type, raw, path)
        except WeChatUnavailable as exc:
            self._count(api, "malformed", start)
            _log_failure(api, exc)
            raise
        self._count(api, str(answer.errcode), start)
        if answer.errcode != 0:
            error = WeChatApiError(answer.errcode, answer.errmsg, path)
            _log_failure(api, error)
            raise error
        log.debug("wechat.call", api=api, path=path, latency_ms=round(latency * 1000, 2))
        return answer, latency

    def _count(self, api: str, result: str, start: float) -> None:
        apimetrics.CALLS.labels(self._service, api, result).inc()
        apimetrics.CALL_SECONDS.labels(self._service, api).observe(time.perf_counter() - start)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, path: str) -> bytes:
    if resp.content_length is not None and resp.content_length <= cap:
        # Announced and small (WeChat's answers): read at once, not chunk by chunk.
        return await resp.read()
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > cap:
            # WeChat did answer, so it may have acted on the request.
            raise WeChatUnavailable(path, f"answer larger than {cap} bytes", ambiguous=True)
        parts.append(chunk)
    return b"".join(parts)


def _decode_answer(answer_type: type[A], raw: bytes, path: str) -> A:
    try:
        answer: A = _answer_decoders[answer_type].decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # A 200 that is not WeChat's JSON (a proxy's page?): WeChat may still have acted.
        raise WeChatUnavailable(path, "answer is not WeChat's JSON", ambiguous=True) from None
    return answer


def _unavailable(path: str, exc: BaseException) -> WeChatUnavailable:
    """Classify a transport failure; ``ambiguous`` unless the request surely never left."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return WeChatUnavailable(path, "connect timeout")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.InvalidURL):
        return WeChatUnavailable(path, f"cannot connect ({type(exc).__name__})")
    if isinstance(exc, TimeoutError):
        return WeChatUnavailable(path, "timeout waiting for the answer", ambiguous=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return WeChatUnavailable(path, "connection dropped before the answer", ambiguous=True)
    return WeChatUnavailable(path, f"connection failed ({type(exc).__name__})", ambiguous=True)


def _result_of(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "connection"


def _status_result(status: int | None) -> str:
    return f"http_{status}" if status is not None else "unavailable"


def _error_result(exc: WeChatCallError) -> str:
    if isinstance(exc, WeChatApiError):
        return str(exc.errcode)
    if isinstance(exc, WeChatUnavailable):
        return _status_result(exc.status)
    return "bad_request"


def _log_failure(api: str, exc: WeChatCallError) -> None:
    if isinstance(exc, WeChatApiError):
        log.warning(
            "wechat.call_failed",
            api=api,
            path=exc.path,
            errcode=exc.errcode,
            error=exc.name,
            rid=exc.rid,
        )
    elif isinstance(exc, WeChatUnavailable):
        log.warning(
            "wechat.call_failed",
            api=api,
            path=exc.path,
            reason=exc.reason,
            status=exc.status,
            ambiguous=exc.ambiguous,
        )
