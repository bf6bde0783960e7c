"""forgotten(): may the store have forgotten something of an item made at a given time?"""

from __future__ import annotations

from libs.common.store import Claim, forgotten


def test_an_item_made_before_the_stores_memory_began_may_be_forgotten() -> None:
    claim = Claim(ok=True, since=200.0)
    assert forgotten(claim, born=199.5)
    assert not forgotten(claim, born=200.0)
    assert not forgotten(claim, born=250.0)


def test_a_memory_that_was_never_lost_forgets_nothing() -> None:
    assert not forgotten(Claim(ok=True, since=0.0), born=1.0)
