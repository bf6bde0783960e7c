"""The HTTP answer to a settled push: ``success``, or the transfer reply in the push's format.

``success`` is never encrypted; a transfer reply is encrypted whenever the push was (the safe
mode requires it, the compatible mode allows it), with a fresh timestamp and WeChat's nonce.
"""

from __future__ import annotations

import time

from aiohttp import web

from libs.common.wechat import replies
from libs.common.wechat.push import OpenedPush, PushConfig

_CONTENT_TYPES = {"xml": "text/xml", "json": "application/json"}


def success() -> web.Response:
    return web.Response(body=replies.SUCCESS, content_type="text/plain")


def transfer(opened: OpenedPush, config: PushConfig) -> web.Response:
    """``transfer_customer_service`` for the user message in ``opened``."""
    msg = opened.message
    now = int(time.time())
    # The reply goes back to the user (ToUserName) from the mini program (FromUserName).
    body = replies.transfer(msg.from_user, msg.to_user, now, opened.fmt)
    if opened.encrypted:
        assert config.cipher is not None  # an encrypted push was opened with this cipher
        body = replies.encrypt_reply(
            config.cipher,
            config.token,
            body,
            timestamp=str(now),
            nonce=opened.nonce,
            fmt=opened.fmt,
        )
    return web.Response(body=body, content_type=_CONTENT_TYPES[opened.fmt])
