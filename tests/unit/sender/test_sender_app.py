"""The sender app's own lifetime: what it changes in the process while it runs."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator

import pytest
from aiohttp import web

from libs.common.bus.memory import MemoryBus
from libs.common.settings import load
from libs.common.store.memory import MemoryStore
from services.sender.app import YOUNG_GC_THRESHOLD, create_app, young_generation
from services.sender.settings import SenderSettings


@pytest.fixture
def default_thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


async def test_the_young_generation_is_collected_less_often_while_the_app_runs(
    default_thresholds: tuple[int, int, int],
) -> None:
    settings = load(
        SenderSettings, {}, appid="wx0123456789abcdef", app_secret="x" * 32, bus_url="memory://"
    )
    app = create_app(
        settings, bus=MemoryBus.fresh(), store=MemoryStore(prefix=f"t{uuid.uuid4().hex[:6]}:")
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, 10, 10)
    finally:
        await runner.cleanup()
    assert gc.get_threshold() == default_thresholds


def test_a_higher_threshold_already_set_is_kept(default_thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(50_000, 10, 10)
    with young_generation(2000):
        assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_threshold() == (50_000, 10, 10)
