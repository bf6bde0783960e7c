"""Typed application keys of the media service's own resources."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from services.media.assets import AssetDir
from services.media.cache import DiskCache
from services.media.settings import MediaSettings
from services.media.uploads import Uploader
from services.media.upstream import WeChatMedia

SETTINGS = web.AppKey("media_settings", MediaSettings)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("media_clock")
"""WeChat's time as this service sees it (tests pass the simulator's clock)."""
WECHAT = web.AppKey("media_wechat", WeChatMedia)
UPLOADER = web.AppKey("media_uploader", Uploader)
CACHE = web.AppKey("media_cache", DiskCache)
"""Absent when ``WXKF_MEDIA_CACHE_DIR`` is not set."""
ASSETS = web.AppKey("media_assets", AssetDir)
"""Absent when ``WXKF_ASSETS_DIR`` is not set."""
