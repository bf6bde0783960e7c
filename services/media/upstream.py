"""WeChat's temp-media API as the media service uses it: token handled, transient errors retried.

The shared :class:`~libs.common.wechat.api.ApiClient` and
:class:`~libs.common.wechat.token.AccessToken` do the calls and the token (refresh and retry
once on 40001/40014/42001). Here, transient failures (-1, 45009, 45011, HTTP 5xx, timeouts,
dropped connections) are retried with capped exponential backoff until a deadline, and
WeChat's answers become the service's own errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from libs.common.wechat.api import ApiClient, MediaDownload, UploadedMedia
from libs.common.wechat.apierrors import (
    TokenUnavailable,
    WeChatApiError,
    WeChatCallError,
)
from libs.common.wechat.token import AccessToken
from services.media import metrics
from services.media.errors import TooLarge, UpstreamError, WeChatRefused
from services.media.intake import Intake

log = structlog.get_logger(__name__)

T = TypeVar("T")

INVALID_MEDIA_ID = 40007
MEDIA_TOO_LARGE = 45001
_FIRST_PAUSE_S = 0.2
_MAX_PAUSE_S = 2.0


class WeChatMedia:
    """Upload and download of temporary media through the shared client and token."""

    def __init__(self, api: ApiClient, token: AccessToken, *, deadline_s: float) -> None:
        self._api = api
        self._token = token
        self.deadline_s = deadline_s

    async def upload(self, intake: Intake) -> UploadedMedia:
        # The client takes bytes; the intake is at most the configured cap (2 MB by default).
        data = await asyncio.to_thread(intake.read_all)
        try:
            return await self._retrying(
                "upload",
                lambda token: self._api.upload_media(
                    token, data, filename=intake.filename, content_type=intake.kind.mime
                ),
                self.deadline_s,
            )
        except WeChatApiError as exc:
            if exc.errcode == MEDIA_TOO_LARGE:
                raise TooLarge(
                    f"WeChat refused the image as too large: {exc.errmsg}", errcode=exc.errcode
                ) from None
            if exc.kind in ("media", "permanent"):
                raise WeChatRefused(
                    f"WeChat refused the upload: {exc.errmsg}", errcode=exc.errcode
                ) from None
            raise _upstream(exc) from None
        except (WeChatCallError, TokenUnavailable) as exc:
            raise _upstream(exc) from None

    async def open(self, media_id: str, *, deadline_s: float | None = None) -> MediaDownload:
        """Open a download; WeChat's 40007 comes out as :class:`WeChatApiError` for the caller
        to tell "expired" from "not found"; other failures as :class:`UpstreamError`.

        ``deadline_s=0`` makes one attempt (token refresh included): what a bus consumer
        wants, since it retries through the bus instead of waiting.
        """
        budget = self.deadline_s if deadline_s is None else deadline_s
        try:
            return await self._retrying(
                "download", lambda token: self._api.get_media(token, media_id), budget
            )
        except WeChatApiError as exc:
            if exc.errcode == INVALID_MEDIA_ID:
                raise
            raise _upstream(exc) from None
        except (WeChatCallError, TokenUnavailable) as exc:
            raise _upstream(exc) from None

    async def _retrying(
        self, api: str, call: Callable[[str], Awaitable[T]], deadline_s: float
    ) -> T:
        deadline = time.monotonic() + deadline_s
        pause = _FIRST_PAUSE_S
        while True:
            try:
                return await self._token.call(call)
            except (WeChatCallError, TokenUnavailable) as exc:
                if exc.kind != "transient" or time.monotonic() + pause > deadline:
                    raise
                metrics.UPSTREAM_RETRIES.labels(api).inc()
                log.info("media.upstream_retry", api=api, error=str(exc), pause_s=pause)
            # Retrying here is fine: this is a client's request with a deadline, not a consumer.
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE_S)


def _upstream(exc: WeChatCallError | TokenUnavailable) -> UpstreamError:
    retryable = exc.kind in ("transient", "token")
    if isinstance(exc, TokenUnavailable):
        return UpstreamError(
            f"no WeChat access token: {exc.reason}", errcode=exc.errcode, retryable=retryable
        )
    return UpstreamError(f"WeChat failed: {exc}", errcode=exc.errcode, retryable=retryable)
