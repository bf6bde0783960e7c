"""Typed application keys of the router's own resources."""

from __future__ import annotations

from aiohttp import web

from services.router.rules import Rules
from services.router.settings import RouterSettings

SETTINGS = web.AppKey("router_settings", RouterSettings)
RULES = web.AppKey("rules", Rules)
