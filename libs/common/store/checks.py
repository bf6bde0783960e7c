"""Argument checks shared by the store backends: bad input fails before anything is written."""

from __future__ import annotations

import math

from libs.common.store import GRANT_KINDS, Grant, GrantKind, RateLimit, Write

CLOSE_REASONS = ("window_expired", "quota_exhausted")


def key(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"store key must be a non-empty string, got {value!r}")
    return value


def ttl(ttl_s: float) -> float:
    if not _finite(ttl_s) or ttl_s <= 0:
        raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
    return float(ttl_s)


def ttl_ms(ttl_s: float) -> int:
    """Redis counts TTLs in whole milliseconds; never round a short TTL down to none."""
    return max(1, math.ceil(ttl(ttl_s) * 1000))


def value(data: bytes) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"store values are bytes, got {type(data).__name__}")
    return bytes(data)


def text(name: str, data: str) -> str:
    if not isinstance(data, str) or not data:
        raise ValueError(f"{name} must be a non-empty string, got {data!r}")
    return data


def now(when: float) -> float:
    if not _finite(when):
        raise ValueError(f"now must be a finite unix time in seconds, got {when!r}")
    return float(when)


def kind(name: str) -> GrantKind:
    for known in GRANT_KINDS:
        if name == known:
            return known
    raise ValueError(f"grant kind must be one of {', '.join(GRANT_KINDS)}, got {name!r}")


def grant(g: Grant) -> Grant:
    kind(g.kind)
    if isinstance(g.count, bool) or not isinstance(g.count, int) or g.count < 0:
        raise ValueError(f"grant count must be an integer >= 0, got {g.count!r}")
    if not _finite(g.until):
        raise ValueError(f"grant until must be a finite unix time in seconds, got {g.until!r}")
    return g


def close_reason(reason: str) -> str:
    if reason not in CLOSE_REASONS:
        raise ValueError(f"close reason must be one of {', '.join(CLOSE_REASONS)}, got {reason!r}")
    return reason


def rate(per_s: float, burst: int) -> tuple[float, int]:
    if not _finite(per_s) or per_s <= 0:
        raise ValueError(f"rate must be a positive number of tokens per second, got {per_s!r}")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an integer >= 1, got {burst!r}")
    return float(per_s), burst


def write(w: Write) -> Write:
    if not isinstance(w, Write):
        raise ValueError(f"writes are store.Write values, got {type(w).__name__}")
    key(w.key)
    data = value(w.value)
    if w.ttl_s is not None:
        ttl(w.ttl_s)
    return w if data is w.value else Write(key=w.key, value=data, ttl_s=w.ttl_s)


def rate_limit(r: RateLimit) -> RateLimit:
    if not isinstance(r, RateLimit):
        raise ValueError(f"rate must be a store.RateLimit, got {type(r).__name__}")
    key(r.key)
    rate(r.rate, r.burst)
    now(r.now)
    return r


def limit(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"a count or limit must be an integer >= 1, got {n!r}")
    return n


def claim_now(window: str | None, when: float | None) -> float:
    """The window's "now" for a claim: required with a window, ignored without one."""
    if window is None:
        return 0.0 if when is None else now(when)
    key(window)
    if when is None:
        raise ValueError("now must be given with a window: the window's time decides")
    return now(when)


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
