"""Typed application keys of the sender's own resources."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from services.sender.handlers import Sender
from services.sender.settings import SenderSettings

SETTINGS = web.AppKey("sender_settings", SenderSettings)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("sender_clock")
"""WeChat's time as the sender sees it (tests pass the simulator's clock)."""
SENDER = web.AppKey("sender", Sender)
