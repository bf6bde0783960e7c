"""The router's metrics. Deliveries, retries and dead letters of its queue are counted by the
bus (``wxkf_bus_*``, queue ``wxkf.router.events``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DECISION_BUCKETS_S: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    2.5,
    5.0,
)
"""Decisions take well under a millisecond; the upper buckets show a slow store."""

DECISIONS = Counter(
    "wxkf_router_decisions_total",
    "Decisions made, by the rule that ended the search and the leading action.",
    ["rule", "action"],
)
DECISION_SECONDS = Histogram(
    "wxkf_router_decision_duration_seconds",
    "Time from a delivery to its decision being answered (session read and rules included).",
    buckets=DECISION_BUCKETS_S,
)
LATE = Counter(
    "wxkf_router_late_decisions_total",
    "Decisions for user messages whose requester had stopped waiting (still carried out).",
)
REDELIVERED = Counter(
    "wxkf_router_redelivered_events_total",
    "Events seen again: done (nothing repeated), resumed (an unfinished plan carried out) or "
    "forgotten (its plan may be lost with the store's memory: carried out as possible repeats).",
    ["outcome"],
)
COMMANDS = Counter(
    "wxkf_router_commands_total",
    "Send commands published, by message type.",
    ["msgtype"],
)
DECISION_FACTS = Counter(
    "wxkf_router_decision_facts_total",
    "decision.<action> facts published, by outcome (published, unroutable: nobody listens).",
    ["outcome"],
)
EXTENSION_PUBLISHES = Counter(
    "wxkf_router_extension_publishes_total",
    "Events republished to extension topics, by topic and outcome (ok, unroutable).",
    ["topic", "outcome"],
)
PLAN_NOT_FINISHED = Counter(
    "wxkf_router_plans_not_marked_done_total",
    "Plans carried out whose done mark the store did not take (a redelivery would repeat them "
    "as possible repeats).",
)
ANSWERS_SKIPPED = Counter(
    "wxkf_router_answers_skipped_total",
    "Decision answers not sent because their requester stopped waiting long ago (an event "
    "redelivered or delayed past WeChat's 5 s).",
)
ANSWER_FAILURES = Counter(
    "wxkf_router_answer_failures_total",
    "Decision answers that could not be sent to the requester (the work still goes on).",
)
RELOADS = Counter(
    "wxkf_router_rules_reloads_total",
    "Rules file loads after start, by outcome (ok, invalid); invalid keeps the rules in use.",
    ["outcome"],
)
RULES_VALID = Gauge(
    "wxkf_router_rules_file_valid",
    "1 when the rules in use are the file's current content; 0 when the file is invalid.",
)
RULES_COUNT = Gauge("wxkf_router_rules", "Rules in use (the fallback not counted).")
RULES_LOADED_AT = Gauge(
    "wxkf_router_rules_loaded_timestamp_seconds", "When the rules in use were loaded."
)
