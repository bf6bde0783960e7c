"""The small HTTP client other services use to reach the media service's internal API.

The sender resolves an asset name to a media_id that is valid now::

    client = MediaClient(session, "http://wxkf-media:8084", token=settings.internal_token)
    ref = await client.asset_media_id("welcome.png")
    # WeChat refused ref.media_id (40007)? Ask again, naming the refused id:
    ref = await client.asset_media_id("welcome.png", refused=ref.media_id)

Errors say whether a later try may work (:attr:`MediaServiceError.retryable`).
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import msgspec

__all__ = ["AssetNotFound", "MediaClient", "MediaRef", "MediaServiceError"]


class MediaRef(msgspec.Struct, frozen=True, kw_only=True):
    """A WeChat temporary media id and how long it stays valid."""

    media_id: str
    created_at: float
    expires_at: float
    sha256: str = ""
    reused: bool = False
    """True when the service answered with an earlier upload of the same bytes."""


class MediaServiceError(Exception):
    """The media service refused or could not be reached; ``code`` is its error code."""

    def __init__(
        self, message: str, *, code: str, status: int | None, retryable: bool, errcode: int | None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retryable = retryable
        self.errcode = errcode
        """WeChat's errcode when WeChat was the one that refused."""


class AssetNotFound(MediaServiceError):
    """No asset has that name (or the asset API is off)."""


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: str = "unknown"
    message: str = ""
    errcode: int | None = None
    retryable: bool | None = None


_ref_decoder = msgspec.json.Decoder(MediaRef)
_error_decoder = msgspec.json.Decoder(_ErrorBody)


class MediaClient:
    """Calls to one media service over a shared :class:`aiohttp.ClientSession`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def asset_media_id(self, name: str, *, refused: str | None = None) -> MediaRef:
        """A media_id for the asset ``name`` that is valid now (uploaded again when needed).

        ``refused``: a media_id from this asset that WeChat has just refused; the service then
        uploads again instead of answering the same id.
        """
        params = {"refused": refused} if refused else None
        url = f"{self._base}/v1/assets/{quote(name, safe='')}/media_id"
        return await self._call("GET", url, params=params)

    async def upload(self, data: bytes, *, filename: str = "image") -> MediaRef:
        """Upload an image's bytes; the service checks them and reuses an earlier upload."""
        form = aiohttp.FormData()
        form.add_field("media", data, filename=filename, content_type="application/octet-stream")
        return await self._call("POST", f"{self._base}/v1/media", data=form)

    async def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        data: aiohttp.FormData | None = None,
    ) -> MediaRef:
        try:
            async with self._session.request(
                method, url, params=params, data=data, headers=self._headers, timeout=self._timeout
            ) as resp:
                body = await resp.read()
                if resp.status == 200:
                    return _ref_decoder.decode(body)
                raise _error(resp.status, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MediaServiceError(
                f"media service unreachable: {type(exc).__name__}: {exc}",
                code="unreachable",
                status=None,
                retryable=True,
                errcode=None,
            ) from None
        except msgspec.DecodeError as exc:
            raise MediaServiceError(
                f"media service answered an unreadable body: {exc}",
                code="bad_answer",
                status=200,
                retryable=True,
                errcode=None,
            ) from None


def _error(status: int, body: bytes) -> MediaServiceError:
    try:
        parsed = _error_decoder.decode(body)
    except msgspec.DecodeError:
        parsed = _ErrorBody(message=body[:200].decode("utf-8", "replace"))
    message = f"media service answered {status} {parsed.error}: {parsed.message}"
    missing = parsed.error in ("asset_not_found", "assets_disabled")
    cls = AssetNotFound if missing else MediaServiceError
    retryable = parsed.retryable
    if retryable is None:
        # Without the service's word: 5xx and 429 may pass; a 4xx says the same next time.
        retryable = status >= 500 or status == 429
    return cls(
        message, code=parsed.error, status=status, retryable=retryable, errcode=parsed.errcode
    )
