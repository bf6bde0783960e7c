"""Metrics of WeChat API calls and of the shared access token.

Both the sender and the media service call WeChat through the same client, so the series carry
a ``service`` label; ``wxkf run all`` serves them from one process without mixing them up.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# WeChat answers in tens of milliseconds when healthy and the client gives up after seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CALLS = Counter(
    "wxkf_wechat_api_calls_total",
    "Calls to WeChat's API by API and result (errcode, http_<status>, timeout, connection).",
    ["service", "api", "result"],
)
CALL_SECONDS = Histogram(
    "wxkf_wechat_api_call_duration_seconds",
    "Time WeChat took to answer, by API (every answer, errors included).",
    ["service", "api"],
    buckets=_LATENCY_BUCKETS,
)
TOKEN_REFRESHES = Counter(
    "wxkf_wechat_token_refreshes_total",
    "Access token refreshes by kind (normal, forced) and outcome (ok, unchanged, error).",
    ["service", "kind", "outcome"],
)
TOKEN_WAITS = Counter(
    "wxkf_wechat_token_waits_total",
    "Times a caller waited for another replica's refresh, by outcome (adopted, timeout).",
    ["service", "outcome"],
)
