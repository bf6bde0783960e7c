"""The sender's metrics. WeChat calls, their latency and token refreshes are counted by the
shared client (``wxkf_wechat_*``, label ``service="sender"``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from libs.common.observability.metrics import LATENCY_BUCKETS_S

COMMANDS = Counter(
    "wxkf_sender_commands_total",
    "Commands settled, by message type and outcome (sent, rejected, failed, duplicate).",
    ["msgtype", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "wxkf_sender_command_duration_seconds",
    "Time one delivery of a command took in the sender, WeChat's answer included.",
    ["msgtype"],
    buckets=LATENCY_BUCKETS_S,
)
QUOTA = Counter(
    "wxkf_sender_quota_decisions_total",
    "Reply-window decisions: granted, no_window, window_expired, quota_exhausted, released, "
    "and corrected_window_expired / corrected_quota_exhausted after WeChat's 45015 / 45047.",
    ["decision"],
)
WINDOW_GRANTS = Counter(
    "wxkf_sender_window_grants_total",
    "Reply windows opened or renewed, by kind (message, enter).",
    ["kind"],
)
RETRIES = Counter(
    "wxkf_sender_retries_total",
    "Deliveries handed back to the bus for a later try, by reason.",
    ["reason"],
)
DEAD_LETTERS = Counter(
    "wxkf_sender_dead_letters_total",
    "Commands sent to the dead-letter queue after their last attempt, by message type.",
    ["msgtype"],
)
AMBIGUOUS = Counter(
    "wxkf_sender_ambiguous_total",
    "Calls whose fate is unknown (WeChat may have delivered), by message type and policy.",
    ["msgtype", "policy"],
)
ORDER_GAVE_UP = Counter(
    "wxkf_sender_order_gave_up_total",
    "Commands sent on their last attempt although an earlier one of their decision was not done.",
)
RATE_WAIT_SECONDS = Histogram(
    "wxkf_sender_rate_wait_seconds",
    "Time a call waited for the shared rate limit.",
    buckets=LATENCY_BUCKETS_S,
)


LEDGER_FORGOTTEN = Counter(
    "wxkf_sender_ledger_forgotten_total",
    "Commands reported ambiguous instead of sent: the store lost its memory after they were "
    "made, and the copy may repeat one handled before.",
)
OUTCOME_UNRECORDED = Counter(
    "wxkf_sender_outcomes_unrecorded_total",
    "Sends WeChat took whose outcome the store did not take at once (reported, acked, and "
    "written later).",
)
