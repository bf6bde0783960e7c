"""The simulator's typed application keys."""

from __future__ import annotations

from aiohttp import web

from services.simulator.state import SimState

STATE = web.AppKey("sim_state", SimState)
