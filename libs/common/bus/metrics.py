"""The bus's Prometheus metrics, shared by both backends (one process, one registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PUBLISHES = Counter(
    "wxkf_bus_publishes_total",
    "Publishes by exchange and outcome (ok, nack, unroutable, timeout, error).",
    ["exchange", "outcome"],
)
PUBLISH_SECONDS = Histogram(
    "wxkf_bus_publish_duration_seconds",
    "Time from publish to the broker's confirm (or the failure).",
    ["exchange"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
DELIVERIES = Counter(
    "wxkf_bus_deliveries_total",
    "Deliveries by queue and outcome (ack, retry, dead_letter, undecodable, requeue).",
    ["queue", "outcome"],
)
RECONNECTS = Counter("wxkf_bus_reconnects_total", "Connections to the broker re-established.")
BLOCKED = Gauge(
    "wxkf_bus_connection_blocked",
    "1 while the broker blocks this connection's publishes (a memory or disk alarm).",
    ["connection"],
)
BLOCKINGS = Counter(
    "wxkf_bus_connection_blocks_total",
    "Times the broker blocked a connection (connection.blocked), by connection.",
    ["connection"],
)
CONSUMER_RESTORES = Counter(
    "wxkf_bus_consumer_restores_total",
    "Consumers found missing on a live channel and started again by the bus.",
    ["queue"],
)
RPC_LATE_REPLIES = Counter(
    "wxkf_bus_rpc_late_replies_total", "Replies that came after their request stopped waiting."
)
RPC_TIMEOUTS = Counter(
    "wxkf_bus_rpc_timeouts_total", "Requests whose reply did not come within their deadline."
)
