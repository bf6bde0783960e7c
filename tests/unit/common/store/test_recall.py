"""Recall: has the store forgotten since this process first used it?"""

from __future__ import annotations

from libs.common.store import Claim, Recall


def answer(since: float) -> Claim:
    return Claim(ok=True, since=since)


def test_the_memory_a_process_started_with_is_never_taken_for_a_loss() -> None:
    recall = Recall()
    assert not recall.forgotten(answer(100.0), born=50.0)
    assert not recall.forgotten(answer(100.0), born=50.0)
    assert recall.lost_at is None


def test_a_new_start_of_memory_means_what_was_born_before_it_may_be_forgotten() -> None:
    recall = Recall()
    recall.heard(answer(100.0))
    assert recall.forgotten(answer(200.0), born=150.0)
    assert not recall.forgotten(answer(200.0), born=250.0)
    # Every later answer of the same memory keeps saying so.
    assert recall.forgotten(answer(200.0), born=199.0)


def test_the_latest_loss_is_the_one_that_counts() -> None:
    recall = Recall()
    recall.heard(answer(100.0))
    recall.heard(answer(200.0))
    assert recall.forgotten(answer(300.0), born=250.0)
    assert recall.lost_at == 300.0
