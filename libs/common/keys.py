"""Typed application keys for the resources every service shares.

A service's own settings and resources get their own ``web.AppKey`` in the service package.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from libs.common.bus import Bus
from libs.common.store import Store

BUS = web.AppKey("bus", Bus)
STORE = web.AppKey("store", Store)
HTTP = web.AppKey("http", aiohttp.ClientSession)
SERVICE = web.AppKey("service", str)
"""The service's name: ``ingress``, ``router``, ``sender``, ``media``."""
