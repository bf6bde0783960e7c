"""Metric helpers: latency buckets and the Timer."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from libs.common.observability.metrics import LATENCY_BUCKETS_S, Timer


def test_latency_buckets_are_sorted_seconds_from_sub_ms_past_five_s() -> None:
    assert list(LATENCY_BUCKETS_S) == sorted(set(LATENCY_BUCKETS_S))
    assert LATENCY_BUCKETS_S[0] <= 0.001
    assert LATENCY_BUCKETS_S[-1] > 5.0
    assert 5.0 in LATENCY_BUCKETS_S  # WeChat's push deadline is a bucket edge
    assert sum(1 for b in LATENCY_BUCKETS_S if b <= 0.1) >= 6  # ms answers are resolved


def test_timer_measures_and_feeds_a_histogram() -> None:
    registry = CollectorRegistry()
    hist = Histogram("t_seconds", "t", buckets=LATENCY_BUCKETS_S, registry=registry)
    with Timer(hist.observe) as timer:
        sum(range(1000))
    assert timer.elapsed_s > 0
    assert registry.get_sample_value("t_seconds_count") == 1
    assert registry.get_sample_value("t_seconds_sum") == pytest.approx(timer.elapsed_s)


def test_timer_observes_also_when_the_block_raises() -> None:
    seen: list[float] = []
    with pytest.raises(KeyError), Timer(seen.append):
        raise KeyError("x")
    assert len(seen) == 1
    assert seen[0] >= 0


def test_timer_without_a_sink_just_measures() -> None:
    with Timer() as timer:
        pass
    assert timer.elapsed_s >= 0
