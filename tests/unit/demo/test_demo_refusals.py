"""A push ingress refuses shows on the demo's console, with its reason."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog
from aiohttp.test_utils import TestServer

from libs.common.bus.memory import MemoryBus
from libs.common.observability.logging import configure
from libs.common.settings import Secret
from libs.common.store.memory import MemoryStore
from services.demo import refusals
from services.ingress.app import create_app
from services.ingress.settings import IngressSettings
from services.simulator.config import DEMO_AES_KEY, DEMO_APPID, DEMO_TOKEN
from services.simulator.pusher import Pusher


@pytest.fixture
def console() -> Iterator[list[str]]:
    config, root = structlog.get_config(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure("wxkf", fmt="json", level="info", stream=io.StringIO())
    printed: list[str] = []
    handler = refusals.attach(printed.append)
    try:
        yield printed
    finally:
        refusals.detach(handler)
        structlog.configure(**config)  # later tests capture debug lines
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_a_push_with_another_token_is_shown_with_its_reason(console: list[str]) -> None:
    settings = IngressSettings(
        appid=DEMO_APPID, token=Secret(DEMO_TOKEN), aes_key=Secret(DEMO_AES_KEY)
    )
    app = create_app(settings, bus=MemoryBus.fresh(), store=MemoryStore())
    async with TestServer(app) as server:
        url = str(server.make_url("/wechat"))
        async with Pusher(
            url, token="not-the-demo-token", aes_key=DEMO_AES_KEY, attempts=1
        ) as pusher:
            result = await pusher.text("你好")
    assert result.answers[0].status == 401
    (line,) = console
    assert "ingress" in line
    assert "refuses a push: bad_signature (HTTP 401)" in line
    assert "is WXKF_TOKEN set in your shell?" in line


def test_other_lines_are_not_shown(console: list[str]) -> None:
    import structlog

    structlog.get_logger(refusals.INGRESS_LOGGER).warning("push.unavailable", reason="x")
    assert console == []
