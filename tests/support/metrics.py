"""What the process-wide Prometheus registry holds now: read before and after, compare."""

from __future__ import annotations

from prometheus_client import REGISTRY


def sample(name: str, **labels: str) -> float:
    """One sample's value; 0 when the series was not created yet.

    Only the metric asked for is collected: ``REGISTRY.get_sample_value`` collects every
    metric of the process, whose series (one per test queue and user) grow over a run until a
    single read holds the event loop for tenths of a second.
    """
    for metric in REGISTRY.restricted_registry([name]).collect():
        for found in metric.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0
