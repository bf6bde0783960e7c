"""Argument checks shared by the store backends: bad input fails before anything is written."""

from __future__ import annotations

import math

from libs.common.store import RateLimit, Write
from libs.common.store.scripts import Args, Step, StepCall, T


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


def args(values: Args) -> Args:
    """A script's arguments: strings, integers and finite floats."""
    for arg in values:
        if isinstance(arg, bool) or not isinstance(arg, str | int | float):
            raise ValueError(f"script arguments are str, int or float, got {arg!r}")
        if isinstance(arg, float) and not math.isfinite(arg):
            raise ValueError(f"script arguments must be finite, got {arg!r}")
    return values


def step(call: StepCall[T]) -> StepCall[T]:
    if not isinstance(call, StepCall) or not isinstance(call.step, Step):
        raise ValueError(f"a claim's step is a store.StepCall, got {type(call).__name__}")
    key(call.key)
    args(call.args)
    return call


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
