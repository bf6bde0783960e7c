"""Typed application keys of the history service's own resources."""

from __future__ import annotations

from aiohttp import web

from examples.extension.db import HistoryDb
from examples.extension.settings import HistorySettings

SETTINGS = web.AppKey("history_settings", HistorySettings)
DB = web.AppKey("history_db", HistoryDb)
