"""The media service's Prometheus metrics (default registry, served at ``/metrics``).

WeChat's latency is the shared client's ``wxkf_wechat_api_call_duration_seconds`` with
``service="media"``; it is not measured twice.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

UPLOADS = Counter(
    "wxkf_media_uploads_total",
    "Media ids asked of the service (uploads and asset media_ids), by outcome (uploaded, "
    "reused, or the error code).",
    ["outcome"],
)
DOWNLOADS = Counter(
    "wxkf_media_downloads_total",
    "Downloads asked of the service, by outcome (ok, cached, or the error code).",
    ["outcome"],
)
BYTES = Counter(
    "wxkf_media_bytes_total",
    "Media bytes moved: received from clients, uploaded to WeChat, downloaded from WeChat, "
    "sent to clients, archived.",
    ["direction"],
)
CACHE_HITS = Counter("wxkf_media_cache_hits_total", "Downloads answered from the disk cache.")
CACHE_MISSES = Counter("wxkf_media_cache_misses_total", "Downloads the cache could not answer.")
CACHE_EVICTIONS = Counter(
    "wxkf_media_cache_evictions_total", "Entries evicted to keep the cache within its size cap."
)
CACHE_BYTES = Gauge("wxkf_media_cache_bytes", "Bytes held by the disk cache.")
CACHE_ENTRIES = Gauge("wxkf_media_cache_entries", "Entries held by the disk cache.")
UPSTREAM_RETRIES = Counter(
    "wxkf_media_upstream_retries_total",
    "Calls to WeChat repeated after a transient error, per API.",
    ["api"],
)
ASSETS = Counter(
    "wxkf_media_asset_requests_total",
    "Asset operations by operation and outcome.",
    ["op", "outcome"],
)
ARCHIVED = Counter(
    "wxkf_media_archived_total",
    "User images handled by the archive, by outcome (archived, or why not).",
    ["outcome"],
)
