"""Retry delays, delay queue names and queue spec checks (libs/common/topology.py)."""

from __future__ import annotations

import pytest

from libs.common.topology import CORE_QUEUES, DEAD, EVENTS, RETRY, QueueSpec, check_queue_spec


def spec(**fields: object) -> QueueSpec:
    values: dict[str, object] = {"name": "q", "exchange": EVENTS, "bindings": ("a.#",)}
    values.update(fields)
    return QueueSpec(**values)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_the_cap() -> None:
    s = spec(max_attempts=6, retry_base_s=1.0, retry_cap_s=5.0)
    assert s.retry_delays() == (1.0, 2.0, 4.0, 5.0, 5.0)
    assert s.delay_steps() == (1.0, 2.0, 4.0, 5.0)
    assert [s.retry_delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_requested_delay_rounds_up_to_a_step_or_down_to_the_longest() -> None:
    s = spec(max_attempts=4, retry_base_s=0.1, retry_cap_s=10.0)  # 0.1, 0.2, 0.4
    assert s.retry_delay(1, 0.05) == 0.1
    assert s.retry_delay(1, 0.2) == 0.2
    assert s.retry_delay(1, 0.3) == 0.4
    assert s.retry_delay(1, 60.0) == 0.4


def test_one_attempt_means_no_delay_queues() -> None:
    s = spec(max_attempts=1)
    assert s.delay_steps() == ()
    assert s.retry_delay(1) == 0.0


def test_delay_queue_names_are_per_queue_and_in_milliseconds() -> None:
    assert spec(name="wxkf.x").delay_queue(0.25) == "wxkf.x.delay.250ms"
    assert spec(name="wxkf.x").dlq == "wxkf.x.dlq"


def test_the_core_queues_pass_their_own_check() -> None:
    for s in CORE_QUEUES:
        check_queue_spec(s)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": ""}, "name"),
        ({"name": "amq.q"}, "name"),
        ({"exchange": RETRY}, "topic exchange"),
        ({"exchange": DEAD}, "topic exchange"),
        ({"bindings": ()}, "binding"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"delivery_limit": 0}, "delivery_limit"),
        ({"retry_base_s": 0.0}, "retry_base_s"),
        ({"retry_base_s": 5.0, "retry_cap_s": 1.0}, "retry_cap_s"),
    ],
)
def test_a_bad_spec_is_named(fields: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_queue_spec(spec(**fields))
