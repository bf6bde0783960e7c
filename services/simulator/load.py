"""Load: many users pushing text through one :class:`Pusher`, at a rate or a concurrency.

``wxkf sim load`` prints the report; benchmarks call :func:`run_load` and read it.

Ingress's answers say only that a push was taken. What became of it is seen at the simulated
WeChat, when the pusher knows it (``sim``): the replies its users received, and those WeChat
refused, by errcode. Every run pushes as users of its own (a random tag in their openids), so
the simulator's counts for them are this run's. The shipped rules answer each load message
(``load <n>``) with one reply, so every accepted push expects one; after the last push the
run waits (up to ``wait_s``) until each is delivered or refused, and reports the rest as
still pending.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections import Counter
from collections.abc import Callable

import msgspec

from libs.common.wechat.apierrors import ERRCODES
from services.simulator.pusher import Pusher, PushResult
from services.simulator.state import Outcomes, SimState

PROGRESS_EVERY_S = 1.0
_POLL_S = 0.25


class Replies(msgspec.Struct, frozen=True, kw_only=True):
    """The replies of a run as the simulated WeChat saw them."""

    expected: int
    """One per accepted push."""
    delivered: int
    refused: dict[int, int]
    """By errcode."""
    waited_s: float
    """How long the run waited for them after its last push."""

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    @property
    def pending(self) -> int:
        """Accepted pushes whose reply was neither delivered nor refused (yet)."""
        return max(0, self.expected - self.delivered - self.refused_total)

    @property
    def beyond(self) -> int:
        """Replies to pushes not counted as accepted: their answer came too late here (past
        ``--timeout``), but wxkf had taken them."""
        return max(0, self.delivered + self.refused_total - self.expected)

    def lines(self) -> list[str]:
        head = (
            f"replies at the simulator: {self.delivered} delivered, {self.refused_total} "
            f"refused, {self.pending} still pending of {self.expected} expected (one per "
            f"accepted push; waited {self.waited_s:.1f} s after the last push)"
        )
        out = [head]
        if self.beyond:
            out.append(
                f"  {self.beyond} of them answer pushes whose answer came too late here "
                "(wxkf had taken them; WeChat would not have sent them again)"
            )
        for code, n in sorted(self.refused.items()):
            known = ERRCODES.get(code)
            out.append(f"  refused {code} x{n}: {known.meaning if known else 'see WeChat docs'}")
        return out


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """Where a run is, once a second."""

    elapsed_s: float
    begun: int
    answered: int
    accepted: int
    replies: Outcomes | None = None
    """Once the pushes are done: what the simulator saw so far."""

    def line(self) -> str:
        head = f"{self.elapsed_s:6.1f} s: {self.begun} pushes begun, {self.answered} answered "
        head += f"({self.accepted} accepted)"
        if self.replies is None:
            return head
        refused = sum(self.replies.refused.values())
        return f"{head}; replies {self.replies.delivered} delivered, {refused} refused"


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
    replies: Replies | None = None
    """What the simulated WeChat saw of the replies; None without a simulator to ask."""

    @property
    def accepted(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k not in ("failed", "invalid"))

    @property
    def ok(self) -> bool:
        """Something was accepted, and every reply counted was delivered."""
        if not self.accepted:
            return False
        replies = self.replies
        return replies is None or (not replies.pending and not replies.refused)

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
        if self.replies is not None:
            out += self.replies.lines()
        else:
            out.append(
                "replies at the simulator: not counted (give --sim URL: the simulator must also "
                "know that the users wrote, or it refuses every reply with 45015)"
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


def load_openids(users: int, tag: str = "") -> list[str]:
    """28 characters, like WeChat's openids; ``tag`` (6 characters) sets one run's apart."""
    return [f"oWxkfLoad{tag}{i:0{19 - len(tag)}d}" for i in range(users)]


def run_tag() -> str:
    return secrets.token_hex(3)


async def sim_outcomes(pusher: Pusher, prefix: str) -> Outcomes | None:
    """The simulator's counts for the users whose openids start with ``prefix``."""
    sim = pusher.sim
    if isinstance(sim, SimState):
        return sim.outcomes(prefix)
    if isinstance(sim, str):
        url = f"{sim.rstrip('/')}/sim/outcomes"
        async with pusher.session.get(url, params={"prefix": prefix}) as resp:
            body = await resp.read()
            if resp.status != 200:
                return None
        return msgspec.json.decode(body, type=Outcomes)
    return None


async def run_load(
    pusher: Pusher,
    *,
    users: int,
    duration_s: float,
    rate: float | None = None,
    concurrency: int | None = None,
    max_in_flight: int = 2000,
    wait_s: float = 30.0,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> LoadReport:
    """Push text messages from ``users`` users for ``duration_s`` seconds: open-loop at
    ``rate`` pushes/s, or closed-loop with ``concurrency`` pushes always in flight; then wait
    up to ``wait_s`` for the replies at the simulator (when the pusher has one).
    ``on_progress`` hears where the run is every ``progress_every_s``."""
    if (rate is None) == (concurrency is None):
        raise ValueError("give exactly one of rate and concurrency")
    if users < 1 or duration_s <= 0 or (rate is not None and rate <= 0):
        raise ValueError("users, duration_s and rate must be positive")
    if concurrency is not None and concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if wait_s < 0:
        raise ValueError("wait_s must be 0 or more")
    tag = run_tag()
    openids = load_openids(users, tag)
    results: list[PushResult] = []
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    replies_seen: Outcomes | None = None

    def progress() -> Progress:
        return Progress(
            elapsed_s=loop.time() - started_at,
            begun=counter - skipped,
            answered=len(results),
            accepted=sum(r.ok for r in results),
            replies=replies_seen,
        )

    async def report_progress() -> None:
        assert on_progress is not None
        while True:
            await asyncio.sleep(progress_every_s)  # a cadence for people, not a wait
            on_progress(progress())

    reporter = asyncio.create_task(report_progress()) if on_progress else None
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
    replies: Replies | None = None
    accepted = sum(r.ok for r in results)
    try:
        if pusher.sim is not None and accepted:
            prefix = openids[0][: len("oWxkfLoad") + len(tag)]
            waited_from = loop.time()
            while True:
                replies_seen = await sim_outcomes(pusher, prefix)
                if replies_seen is None:
                    break
                answered = replies_seen.delivered + sum(replies_seen.refused.values())
                if answered >= accepted or loop.time() - waited_from >= wait_s:
                    break
                await asyncio.sleep(_POLL_S)  # polling the simulator's counts, bounded above
            if replies_seen is not None:
                replies = Replies(
                    expected=accepted,
                    delivered=replies_seen.delivered,
                    refused=replies_seen.refused,
                    waited_s=loop.time() - waited_from,
                )
    finally:
        if reporter is not None:
            reporter.cancel()
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
        replies=replies,
    )
