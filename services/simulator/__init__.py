"""The WeChat simulator (``wxkf sim``): WeChat's API with its real rules, and its pushes.

Tests and tools use it in process::

    from services.simulator import Pusher, SimClock, SimConfig, SimState, create_app, running

    state = SimState(SimConfig(), clock=SimClock(start=1_700_000_000, ticking=False))
    async with running(create_app(state=state)) as api_url:
        ...                        # point the code under test at api_url (the API base)
        state.clock.advance(48 * 3600)
        state.inbox(openid)        # what the user received

The names are imported on first use, so ``wxkf`` starts without loading them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.simulator.app import create_app, running
    from services.simulator.clock import SimClock
    from services.simulator.config import SimConfig
    from services.simulator.errors import ApiError
    from services.simulator.faults import Fault, FaultRule
    from services.simulator.load import LoadReport, run_load
    from services.simulator.pusher import Pusher, PushResult
    from services.simulator.state import SimState

_WHERE = {
    "create_app": "app",
    "running": "app",
    "SimClock": "clock",
    "SimConfig": "config",
    "ApiError": "errors",
    "Fault": "faults",
    "FaultRule": "faults",
    "LoadReport": "load",
    "run_load": "load",
    "PushResult": "pusher",
    "Pusher": "pusher",
    "SimState": "state",
}

__all__ = [
    "ApiError",
    "Fault",
    "FaultRule",
    "LoadReport",
    "PushResult",
    "Pusher",
    "SimClock",
    "SimConfig",
    "SimState",
    "create_app",
    "run_load",
    "running",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
