"""Load: many users pushing text through one :class:`Pusher`, at a rate or a concurrency.

``wxkf sim load`` prints the report; benchmarks call :func:`run_load` and read it.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import msgspec

from services.simulator.pusher import Pusher, PushResult


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    p50: float
    p90: float
    p99: float
    max: float


class LoadReport(msgspec.Struct, frozen=True, kw_only=True):
    started: int
    """Pushes begun (each may take several attempts)."""
    completed: int
    skipped: int
    """Rate mode: pushes not begun because ``max_in_flight`` were still waiting."""
    elapsed_s: float
    rate: float
    """Completed pushes per second over the whole run."""
    target_rate: float | None
    concurrency: int | None
    outcomes: dict[str, int]
    errors: dict[str, int]
    """Failed attempts by cause: ``timeout``, ``http_<status>``, ``connection: …``, ``invalid``."""
    ack_latency_ms: Percentiles | None
    """Latency of the accepted attempt of each accepted push; None when none was accepted."""

    @property
    def accepted(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k not in ("failed", "invalid"))

    def lines(self) -> list[str]:
        target = f" (target {self.target_rate:g}/s)" if self.target_rate else ""
        conc = f" at concurrency {self.concurrency}" if self.concurrency else ""
        out = [
            f"pushes: {self.completed} completed of {self.started} begun in {self.elapsed_s:.2f} s"
            f"{conc}; achieved {self.rate:.1f}/s{target}",
            "outcomes: " + _counts(self.outcomes),
            "errors: " + (_counts(self.errors) if self.errors else "none"),
        ]
        if self.skipped:
            out.append(f"skipped: {self.skipped} (too many pushes still waiting for an answer)")
        lat = self.ack_latency_ms
        out.append(
            "ACK latency ms: "
            + (
                f"p50 {lat.p50:.2f}  p90 {lat.p90:.2f}  p99 {lat.p99:.2f}  max {lat.max:.2f}"
                if lat
                else "n/a (nothing accepted)"
            )
        )
        return out


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counter.items()))


def percentiles(values: list[float]) -> Percentiles | None:
    """Nearest-rank percentiles."""
    if not values:
        return None
    xs = sorted(values)

    def rank(p: float) -> float:
        return xs[max(0, min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1))]

    return Percentiles(p50=rank(50), p90=rank(90), p99=rank(99), max=xs[-1])


def load_openids(users: int) -> list[str]:
    return [f"oWxkfLoad{i:019d}" for i in range(users)]


async def run_load(
    pusher: Pusher,
    *,
    users: int,
    duration_s: float,
    rate: float | None = None,
    concurrency: int | None = None,
    max_in_flight: int = 2000,
) -> LoadReport:
    """Push text messages from ``users`` users for ``duration_s`` seconds: open-loop at
    ``rate`` pushes/s, or closed-loop with ``concurrency`` pushes always in flight."""
    if (rate is None) == (concurrency is None):
        raise ValueError("give exactly one of rate and concurrency")
    if users < 1 or duration_s <= 0 or (rate is not None and rate <= 0):
        raise ValueError("users, duration_s and rate must be positive")
    if concurrency is not None and concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    openids = load_openids(users)
    results: list[PushResult] = []
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    deadline = started_at + duration_s
    counter = 0
    skipped = 0

    async def one(n: int) -> None:
        results.append(await pusher.text(f"load {n}", openid=openids[n % users]))

    if concurrency is not None:

        async def worker() -> None:
            nonlocal counter
            while loop.time() < deadline:
                n = counter
                counter += 1
                await one(n)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    else:
        assert rate is not None
        in_flight: set[asyncio.Task[None]] = set()
        while (at := started_at + counter / rate) < deadline:
            if (delay := at - loop.time()) > 0:
                await asyncio.sleep(delay)  # pacing the open loop, not waiting for a result
            if len(in_flight) >= max_in_flight:
                skipped += 1
            else:
                task = asyncio.create_task(one(counter))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            counter += 1
        if in_flight:
            await asyncio.gather(*in_flight)
    elapsed = loop.time() - started_at
    outcomes: Counter[str] = Counter(r.outcome for r in results)
    errors: Counter[str] = Counter()
    for r in results:
        for a in r.answers:
            if a.error is not None:
                errors[a.error] += 1
            elif a.status != 200:
                errors[f"http_{a.status}"] += 1
            elif a.reply == "invalid":
                errors["invalid"] += 1
    acks = [lat for r in results if (lat := r.ack_latency_ms) is not None]
    return LoadReport(
        started=counter - skipped,
        completed=len(results),
        skipped=skipped,
        elapsed_s=elapsed,
        rate=len(results) / elapsed if elapsed > 0 else 0.0,
        target_rate=rate,
        concurrency=concurrency,
        outcomes=dict(outcomes),
        errors=dict(errors),
        ack_latency_ms=percentiles(acks),
    )
