"""Every error the media service answers with; mapped to HTTP once, in ``handlers.errors``."""

from __future__ import annotations


class MediaError(Exception):
    """Base: a clear, typed refusal with a stable ``code`` and its HTTP status."""

    code = "media_error"
    http_status = 400
    retryable = False
    """Whether the same request may succeed later (answered in the error body)."""

    def __init__(
        self, message: str, *, errcode: int | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errcode = errcode
        """WeChat's errcode when WeChat is the one that refused."""
        if retryable is not None:
            self.retryable = retryable


class MissingToken(MediaError):
    """The request carries no internal bearer token although one is configured."""

    code = "missing_token"
    http_status = 401


class InvalidToken(MediaError):
    """The request's internal bearer token is not the configured one."""

    code = "invalid_token"
    http_status = 401


class EmptyBody(MediaError):
    """The upload has no bytes."""

    code = "empty_body"


class BadMultipart(MediaError):
    """A multipart upload that cannot be read or has no file part."""

    code = "bad_multipart"


class NotAnImage(MediaError):
    """The bytes are not JPG, PNG or GIF, whatever the name or content type claim."""

    code = "not_an_image"
    http_status = 415


class TypeNotAllowed(MediaError):
    """An image of a kind this deployment does not accept (``WXKF_MEDIA_TYPES``)."""

    code = "type_not_allowed"
    http_status = 415


class TooLarge(MediaError):
    """The body exceeds the configured cap (found while reading, or by WeChat: 45001)."""

    code = "too_large"
    http_status = 413


class BadAssetName(MediaError):
    """An asset name outside ``[A-Za-z0-9._-]``, too long, or starting with a dot."""

    code = "bad_asset_name"


class AssetsDisabled(MediaError):
    """The asset API is off because ``WXKF_ASSETS_DIR`` is not set."""

    code = "assets_disabled"
    http_status = 404


class AssetNotFound(MediaError):
    """No asset has this name."""

    code = "asset_not_found"
    http_status = 404


class MediaNotFound(MediaError):
    """WeChat does not know this media_id (40007) and we never saw it expire."""

    code = "media_not_found"
    http_status = 404


class MediaExpired(MediaError):
    """A media_id WeChat no longer serves because its 3 days are over (40007)."""

    code = "media_expired"
    http_status = 410


class BadMediaId(MediaError):
    """A media_id that cannot be one (empty, too long, odd characters)."""

    code = "bad_media_id"


class WeChatRefused(MediaError):
    """WeChat refused the upload for a reason no retry can fix (e.g. 40004)."""

    code = "wechat_refused"
    http_status = 422


class UpstreamError(MediaError):
    """WeChat failed (errcode, HTTP error, timeout) and retries within the deadline did not help.

    ``retryable`` tells a busy or unreachable WeChat (try later) from a refusal no retry fixes
    (e.g. a wrong AppSecret).
    """

    code = "upstream_error"
    http_status = 502
    retryable = True


class UpstreamBroken(MediaError):
    """WeChat's download broke off after the bytes had started to flow."""

    code = "upstream_broken"
    http_status = 502
    retryable = True
