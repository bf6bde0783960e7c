"""The reply window of each user, as the sender sees it (WECHAT.md §7.1).

A user message opens or renews a grant of ``window_message_count`` messages until its
CreateTime plus ``window_message_s``; entering the chat grants ``window_enter_count`` until its
CreateTime plus ``window_enter_s``. The counts live in the store, shared by every replica and
updated atomically there.
"""

from __future__ import annotations

from libs.common.schemas import AnyMessage, SendCommand, SessionEntered, UserMessage
from libs.common.store import Grant
from services.sender.settings import SenderSettings


def window_key(appid: str, openid: str) -> str:
    return f"sender:window:{appid}:{openid}"


def grant_opened_by(cmd: SendCommand, settings: SenderSettings) -> Grant | None:
    """The grant of the event a command answers (as :func:`grant_for` gives it), if it says."""
    if cmd.opens == "message":
        count, span = settings.window_message_count, settings.window_message_s
    elif cmd.opens == "enter":
        count, span = settings.window_enter_count, settings.window_enter_s
    else:
        return None
    return Grant(kind=cmd.opens, count=count, until=cmd.opened_at + span)


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
