"""``GET`` on the push path: WeChat's URL verification when the owner saves the console form."""

from __future__ import annotations

import structlog
from aiohttp import web

from libs.common.wechat.errors import WeChatError
from libs.common.wechat.push import single_query, verify_url
from services.ingress import metrics
from services.ingress.keys import PUSH

log = structlog.get_logger(__name__)


async def handle(request: web.Request) -> web.Response:
    try:
        echostr = verify_url(single_query(request.query.items()), request.app[PUSH].token)
    except WeChatError as exc:
        metrics.URL_VERIFICATIONS.labels(outcome=exc.code).inc()
        log.warning("verify.refused", reason=exc.code)
        return web.Response(status=exc.http_status, text=exc.code)
    metrics.URL_VERIFICATIONS.labels(outcome="ok").inc()
    log.info("verify.accepted")
    # The body must be echostr exactly: no quotes, no newline, plain text.
    return web.Response(body=echostr.encode(), content_type="text/plain")
