from __future__ import annotations

import pytest

from services.media import heap


@pytest.mark.skipif(not heap.is_glibc(), reason="the thresholds are glibc's")
def test_the_thresholds_are_fixed_under_glibc() -> None:
    assert heap.keep_stream_buffers({}) is True


@pytest.mark.parametrize(
    "name", ["GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"]
)
def test_an_operators_own_malloc_tuning_is_left_alone(name: str) -> None:
    assert heap.keep_stream_buffers({name: "1"}) is False
