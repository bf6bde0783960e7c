"""Typed application keys of the ingress service."""

from __future__ import annotations

from aiohttp import web

from libs.common.store import Recall
from libs.common.wechat.push import PushConfig
from services.ingress.dedupe import Recorder
from services.ingress.gate import Gate
from services.ingress.settings import IngressSettings
from services.ingress.spool import Relay

SETTINGS = web.AppKey("ingress_settings", IngressSettings)
PUSH = web.AppKey("push_config", PushConfig)
"""How WeChat's console is configured for this URL, as the protocol core reads it."""
GATE = web.AppKey("in_flight_gate", Gate)
RECORDER = web.AppKey("done_recorder", Recorder)
"""The answers being written to the store after their pushes were answered."""
RELAY = web.AppKey("spool_relay", Relay)
"""Publishes what the spool keeps; a push that spools wakes it."""
RECALL = web.AppKey("store_recall", Recall)
"""Whether the store has forgotten since this process first used it."""
