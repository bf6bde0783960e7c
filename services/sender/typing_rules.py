"""When a typing indicator can be shown (WECHAT.md §8): a message exchanged with the user in
the last ``typing_exchange_s`` seconds, not already typing, and a reply window with room.

The sender remembers the last exchange (the user's message, or a message it delivered) and
until when it is typing, per user, in the store; WeChat would refuse a typing command that
breaks these rules (45080, 45081), so such a command is rejected without a call.
"""

from __future__ import annotations

from libs.common.store import Store

_GC_TTL_S = 3600.0
"""The values are compared with the caller's clock; the TTL only clears keys nobody reads."""


def exchange_key(appid: str, openid: str) -> str:
    return f"sender:exchange:{appid}:{openid}"


def typing_key(appid: str, openid: str) -> str:
    return f"sender:typing:{appid}:{openid}"


async def note_exchange(store: Store, appid: str, openid: str, *, at: float) -> None:
    """Remember a message exchanged at ``at``; an older one never replaces a newer one."""
    last = await _read_time(store, exchange_key(appid, openid))
    if last is None or at > last:
        await store.set(exchange_key(appid, openid), _time(at), ttl_s=_GC_TTL_S)


async def note_typing(store: Store, appid: str, openid: str, *, until: float | None) -> None:
    """Typing is on until ``until``; None: it is off (cancelled, or a message was delivered)."""
    if until is None:
        await store.delete(typing_key(appid, openid))
    else:
        await store.set(typing_key(appid, openid), _time(until), ttl_s=_GC_TTL_S)


async def refusal(
    store: Store, appid: str, openid: str, *, now: float, exchange_s: float
) -> str | None:
    """Why a Typing command would be refused now, or None when it may be sent."""
    typing_until = await _read_time(store, typing_key(appid, openid))
    if typing_until is not None and now < typing_until:
        return "already typing"
    last = await _read_time(store, exchange_key(appid, openid))
    if last is None or now - last > exchange_s:
        return f"no message exchanged in the last {exchange_s:g} s"
    return None


def _time(at: float) -> bytes:
    return repr(float(at)).encode()


async def _read_time(store: Store, key: str) -> float | None:
    raw = await store.get(key)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None
