"""When a typing indicator can be shown (WECHAT.md §8): a message exchanged with the user in
the last ``typing_exchange_s`` seconds, not already typing, and a reply window with room.

The sender remembers, per user in the store, the last exchange (the user's message, or a
message it delivered) and until when it is typing, in one small value: a delivered message
both renews the exchange and ends the typing, in one write. WeChat would refuse a typing
command that breaks these rules (45080, 45081), so such a command is rejected without a call.
"""

from __future__ import annotations

import msgspec

from libs.common.store import Store, Write

_GC_TTL_S = 3600.0
"""The times are compared with the caller's clock; the TTL only clears keys nobody reads."""


class Chat(msgspec.Struct, frozen=True, kw_only=True):
    exchange: float | None = None
    """When a message last went either way."""
    typing_until: float | None = None


_decoder = msgspec.json.Decoder(Chat)


def chat_key(appid: str, openid: str) -> str:
    return f"sender:chat:{appid}:{openid}"


async def read(store: Store, appid: str, openid: str) -> Chat:
    raw = await store.get(chat_key(appid, openid))
    if raw is None:
        return Chat()
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Chat()


def _chat_write(appid: str, openid: str, chat: Chat) -> Write:
    return Write(key=chat_key(appid, openid), value=msgspec.json.encode(chat), ttl_s=_GC_TTL_S)


async def _write(store: Store, appid: str, openid: str, chat: Chat) -> None:
    write = _chat_write(appid, openid, chat)
    await store.set(write.key, write.value, ttl_s=write.ttl_s)


async def user_wrote(store: Store, appid: str, openid: str, *, at: float) -> None:
    """The user's message at ``at``; a late redelivery never moves the exchange back."""
    chat = await read(store, appid, openid)
    if chat.exchange is None or at > chat.exchange:
        await _write(store, appid, openid, msgspec.structs.replace(chat, exchange=at))


def delivered(appid: str, openid: str, *, at: float) -> Write:
    """We delivered a message at ``at``: an exchange, and the end of any typing. One plain
    write, made together with the command's outcome."""
    return _chat_write(appid, openid, Chat(exchange=at))


async def typing(store: Store, appid: str, openid: str, *, until: float | None) -> None:
    """Typing is on until ``until``; None: off (cancelled)."""
    chat = await read(store, appid, openid)
    await _write(store, appid, openid, msgspec.structs.replace(chat, typing_until=until))


async def refusal(
    store: Store, appid: str, openid: str, *, now: float, exchange_s: float
) -> str | None:
    """Why a Typing command would be refused now, or None when it may be sent."""
    chat = await read(store, appid, openid)
    if chat.typing_until is not None and now < chat.typing_until:
        return "already typing"
    if chat.exchange is None or now - chat.exchange > exchange_s:
        return f"no message exchanged in the last {exchange_s:g} s"
    return None
