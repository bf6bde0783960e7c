"""The media service's settings: ``WXKF_*`` variables into one frozen Struct."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from libs.common.settings import Secret, WeChatApiSettings
from services.media.sniff import KINDS, Kind

MB = 1024 * 1024

Bytes = Annotated[int, msgspec.Meta(gt=0)]
KindName = Literal["jpeg", "jpg", "png", "gif"]


class MediaSettings(WeChatApiSettings, frozen=True, kw_only=True):
    media_port: int = 8084
    internal_token: Secret | None = None
    """Every ``/v1/`` request must carry ``Authorization: Bearer <token>``. Required: without
    it the service does not start, unless ``WXKF_MEDIA_OPEN`` says it runs open."""
    media_open: bool = False
    """Run the API without a token: anyone who reaches the port may upload to WeChat and read
    every image. Only where nothing untrusted reaches it (``wxkf demo`` sets it itself, on
    loopback)."""
    media_max_bytes: Bytes = 2 * MB
    """Largest image accepted for upload (WECHAT.md §9.1: 2 MB is the safe default)."""
    media_types: Annotated[frozenset[KindName], msgspec.Meta(min_length=1)] = frozenset(
        {"jpeg", "png", "gif"}
    )
    """Image kinds accepted for upload, judged by their bytes (``jpg`` is ``jpeg``)."""
    media_spool_bytes: Bytes = 256 * 1024
    """An upload larger than this waits for WeChat in a temporary file, not in memory."""
    media_reuse_margin_h: Annotated[float, msgspec.Meta(ge=0, lt=72)] = 12.0
    """Upload the same bytes again when less than this many hours of the 3 days remain."""
    media_upstream_deadline_s: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    """How long one request may spend retrying WeChat's transient errors."""
    media_cache_dir: str | None = None
    """Directory of the download cache; unset turns the cache off."""
    media_cache_max_bytes: Bytes = 256 * MB
    assets_dir: str | None = None
    """Directory (a volume) of named images; unset turns the asset API off."""
    archive_dir: str | None = None
    """Directory that user images are archived into; setting it turns the archive on."""
    archive_max_bytes: Bytes = 32 * MB
    """Largest user image the archive keeps (WeChat documents no limit)."""

    def __post_init__(self) -> None:
        # The " - at `$.field`" suffix is how settings.load names the variable (see ingress).
        if not self.internal_token and not self.media_open:
            raise ValueError(
                "is required: the media API would be open to anyone who reaches it (set "
                "WXKF_MEDIA_OPEN=true to run it open on purpose) - at `$.internal_token`"
            )

    @property
    def allowed_kinds(self) -> frozenset[Kind]:
        names = {"jpeg" if n == "jpg" else n for n in self.media_types}
        return frozenset(k for k in KINDS if k.name in names)

    def shared_urls(self) -> tuple[str, ...]:
        # The bus only carries the archive's queue.
        return ("bus_url", "store_url") if self.archive_enabled else ("store_url",)

    @property
    def archive_enabled(self) -> bool:
        return bool(self.archive_dir)
