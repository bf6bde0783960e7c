"""Typed application keys for the resources every service shares.

A service's own settings and resources get their own ``web.AppKey`` in the service package.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from libs.common.bus import Bus
from libs.common.store import Store
from libs.common.wechat.api import ApiClient
from libs.common.wechat.token import AccessToken

BUS = web.AppKey("bus", Bus)
STORE = web.AppKey("store", Store)
HTTP = web.AppKey("http", aiohttp.ClientSession)
WECHAT_API = web.AppKey("wechat_api", ApiClient)
"""WeChat's API on the app's :data:`HTTP` session (sender, media)."""
ACCESS_TOKEN = web.AppKey("access_token", AccessToken)
"""The access token shared through the store by every replica of sender and media."""
SERVICE = web.AppKey("service", str)
"""The service's name: ``ingress``, ``router``, ``sender``, ``media``."""
