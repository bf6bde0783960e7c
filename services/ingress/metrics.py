"""The ingress service's domain metrics (the RED metrics of every route come from base_app)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Answers are expected in a few ms; the upper buckets show decisions that ran into the budget.
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    3.0,
    5.0,
)

PUSHES = Counter(
    "wxkf_ingress_pushes_total",
    "Pushes that passed verification, by schema type and outcome.",
    ["type", "outcome"],
)
"""outcome: published; spooled (kept in the store for the broker, see spool.py); unclaimed
(published without the dedupe claim, the store being down); duplicate (a retry of one
settled); unconfirmed (neither the broker nor the spool took it: 503), overdue (not kept
within 4.5 s of arrival, the broker and the store both slow: 503), spool_full,
store_unavailable, pending (503 as well)."""


ANSWER_LATENCY = Histogram(
    "wxkf_ingress_answer_duration_seconds",
    "Time from reading a push to answering it, by answer.",
    ["answer"],
    buckets=_LATENCY_BUCKETS,
)
"""answer: success, transfer, spooled (``success`` without a decision: the event waits in the
spool for the broker), refused (bad input), unavailable (503)."""

DECISION_WAIT = Histogram(
    "wxkf_ingress_decision_wait_seconds",
    "Time a user message waited for the router's decision.",
    buckets=_LATENCY_BUCKETS,
)

DECISIONS = Counter(
    "wxkf_ingress_decisions_total",
    "Decision waits by result: transfer, no_transfer, timeout (answered success), invalid.",
    ["result"],
)


DEDUPE_HITS = Counter(
    "wxkf_ingress_dedupe_hits_total",
    "Retried pushes found in the store, by the state they found: done, pending.",
    ["state"],
)

SHED = Counter(
    "wxkf_ingress_shed_total",
    "Pushes answered 503 unread because WXKF_MAX_IN_FLIGHT were already in flight.",
)

PUBLISH_FAILURES = Counter(
    "wxkf_ingress_publish_failures_total",
    "Events the broker did not confirm (answered 503 so that WeChat retries).",
)

STORE_ERRORS = Counter(
    "wxkf_ingress_store_errors_total",
    "Store operations that failed, by operation.",
    ["op"],
)

BAD_INPUT = Counter(
    "wxkf_ingress_bad_input_total",
    "Requests refused before anything was published, by reason.",
    ["reason"],
)

URL_VERIFICATIONS = Counter(
    "wxkf_ingress_url_verifications_total",
    "URL verification requests (GET) by outcome: ok or the refusal reason.",
    ["outcome"],
)

SPOOLED = Counter(
    "wxkf_ingress_spooled_total",
    "Events kept in the spool because the broker did not take them in time (or the spool was "
    "busy, to keep each user's order).",
)
SPOOL_FULL = Counter(
    "wxkf_ingress_spool_full_total",
    "Pushes answered 503 because the spool held WXKF_SPOOL_LIMIT entries.",
)
RELAYED = Counter(
    "wxkf_ingress_spool_relayed_total", "Spooled events published once the broker took them."
)
SPOOL_DEPTH = Gauge(
    "wxkf_ingress_spool_entries",
    "Entries in the spool, as this process's relay last saw them (0 when it is empty).",
)
SPOOL_UNREADABLE = Counter(
    "wxkf_ingress_spool_unreadable_total",
    "Spool entries that could not be read back, so were dropped (another version, damage).",
)
