"""What every test shares: logging as each test found it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """A test that configures logging (a command run in-process does) leaves it as it found
    it: the level filter of structlog's bound loggers would otherwise hide the lines a later
    test captures."""
    config = structlog.get_config()
    level = logging.getLogger().level
    yield
    structlog.configure(**config)
    logging.getLogger().setLevel(level)
