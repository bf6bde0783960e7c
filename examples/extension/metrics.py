"""The history service's Prometheus metrics (default registry, served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from libs.common.observability.metrics import LATENCY_BUCKETS_S

RECORDS = Counter(
    "wxkf_history_records_total",
    "Bus messages handled by the history, by kind and outcome (stored, duplicate, failed).",
    ["kind", "outcome"],
)
WRITE_SECONDS = Histogram(
    "wxkf_history_write_duration_seconds",
    "Time to store one message, committed (the thread hop included).",
    buckets=LATENCY_BUCKETS_S,
)
WRITES_IN_FLIGHT = Gauge(
    "wxkf_history_writes_in_flight",
    "Deliveries waiting for their write: queued for the database thread or inside it.",
)
