"""The system under test, started once per module for each deployment (see deployments.py).

Tests share it and keep apart by user: each test talks as openids of its own. A callback
that holds an event loop of this process too long fails the test (the in-memory deployment's
services run on it; tests/support/slow_callbacks.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pluggy
import pytest
import pytest_asyncio

from tests.e2e.deployments import System, in_memory, processes

# Autouse: every test of the suite is checked.
from tests.support.slow_callbacks import loop_never_blocked, loop_timed  # noqa: F401


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["processes", "memory"])
async def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[System]:
    tmp: Path = tmp_path_factory.mktemp(f"e2e-{request.param}")
    start = processes if request.param == "processes" else in_memory
    async with start(tmp) as running:
        yield running


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """A failed test's report shows the last log lines of each service process."""
    outcome = yield
    report = outcome.get_result()
    system = getattr(item, "funcargs", {}).get("system")
    if report.when == "call" and report.failed and isinstance(system, System) and system.logs:
        report.sections.append(("the services' last log lines", system.log_tail()))
