"""The reply window of each user, as the sender sees it (WECHAT.md §7.1).

A user message opens or renews a grant of ``window_message_count`` messages until its
CreateTime plus ``window_message_s``; entering the chat grants ``window_enter_count`` until its
CreateTime plus ``window_enter_s``. The counts live in the store, shared by every replica and
updated atomically there.
"""

from __future__ import annotations

from libs.common.schemas import AnyMessage, SessionEntered, UserMessage
from libs.common.store import Grant
from services.sender.settings import SenderSettings


def window_key(appid: str, openid: str) -> str:
    return f"sender:window:{appid}:{openid}"


def grant_for(event: AnyMessage, settings: SenderSettings) -> Grant | None:
    """The grant an inbound event opens, or None for events that open nothing."""
    if isinstance(event, UserMessage):
        return Grant(
            kind="message",
            count=settings.window_message_count,
            until=event.create_time + settings.window_message_s,
        )
    if isinstance(event, SessionEntered):
        return Grant(
            kind="enter",
            count=settings.window_enter_count,
            until=event.create_time + settings.window_enter_s,
        )
    return None
