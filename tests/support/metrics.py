"""What the process-wide Prometheus registry holds now: read before and after, compare."""

from __future__ import annotations

from prometheus_client import REGISTRY


def sample(name: str, **labels: str) -> float:
    """One sample's value; 0 when the series was not created yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
