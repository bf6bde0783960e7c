"""The whole system under a steady stream of user messages: push → delivered latency.

    python bench/bench_system.py [--rates 10,20,40,60,80,100,120,160,200] [--step-s 10]
                                  [--drain-s 15]

Starts ingress, router, sender and media each as its own process (``python -m ...``, log
level info, JSON logs) on RabbitMQ (a vhost of its own, deleted after) and Redis (db 15, this
run's keys removed after), with the WeChat simulator in this process. Every push is a text
from a user of its own (safe mode, XML, one attempt) that the shipped rules answer with one
message (the fallback), so each push is one decision, one command and one delivery.

For each rate, in steps of ``--step-s`` seconds (open loop: pushes leave on schedule whatever
the answers), it prints the pushes answered ``success``, the replies delivered, and the
latency from the push leaving to the simulator recording the delivery (p50, p99, max), with
the push's own answer time (p50, p99). A rate is sustained when every push was answered
``success``, every reply was delivered within ``--drain-s`` after the step and the p99 is
under 1 s; the steps stop at the first rate that is not. Beside them, the baseline measured
in the same run: one send API call from this process straight to the simulator, which is the
delivery leg with nothing of wxkf in between. At the end: the highest rate sustained and the
peak resident memory (VmHWM) of each service process.

Needs RabbitMQ and Redis on loopback (``make services``). Bounded: at most about
``len(rates) × (step + drain)`` seconds plus the start.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from libs.common.observability.logging import configure  # noqa: E402 - after the path
from libs.common.wechat.api import SEND_PATH  # noqa: E402 - same
from services.simulator.config import DEMO_AES_KEY  # noqa: E402 - same
from services.simulator.pusher import Pusher  # noqa: E402 - same
from tests.e2e.deployments import System, processes  # noqa: E402 - same

REDIS_DB = 15
JSON = {"Content-Type": "application/json"}
SUSTAINED_P99_S = 1.0
CONTENT = "你好，在吗？"
"""Matches no rule of the shipped file but the fallback: exactly one reply per push."""


@dataclass
class Step:
    rate: float
    pushes: int = 0
    accepted: int = 0
    failed: list[str] = field(default_factory=list)
    ack_s: list[float] = field(default_factory=list)
    delivered_s: list[float] = field(default_factory=list)
    missing: int = 0

    @property
    def sustained(self) -> bool:
        return (
            self.accepted == self.pushes
            and self.missing == 0
            and bool(self.delivered_s)
            and percentile(self.delivered_s, 99) < SUSTAINED_P99_S
        )


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


async def baseline(system: System, calls: int = 300) -> list[float]:
    """One send call at a time, from this process straight to the simulated API."""
    token = system.sim.token_for_tests()
    openid = "oBenchBaseline" + secrets.token_hex(6)
    system.openids.append(openid)
    system.sim.user_message(openid)
    url = f"{system.sim_url}{SEND_PATH}?access_token={token}"
    # Raw UTF-8, as WeChat requires (an escaped \\uXXXX is refused with 40033).
    body = msgspec.json.encode({"touser": openid, "msgtype": "text", "text": {"content": "您好"}})
    times: list[float] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(calls):
            # Each call reopens the window, so that none is refused by the quota.
            system.sim.user_message(openid)
            started = time.perf_counter()
            async with http.post(url, data=body, headers=JSON) as response:
                answer = await response.json(content_type=None)
            times.append(time.perf_counter() - started)
            if answer.get("errcode", 0) != 0:
                raise SystemExit(f"baseline send refused: {answer}")
    return times


async def run_step(system: System, rate: float, step_s: float, drain_s: float, tag: str) -> Step:
    step = Step(rate=rate)
    sent_at: dict[str, float] = {}
    clock = system.sim.clock
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=5)
    ) as http:

        async def push(openid: str) -> None:
            pusher = Pusher(
                system.push_url,
                appid=system.appid,
                aes_key=DEMO_AES_KEY,
                mode="safe",
                fmt="xml",
                sim=system.sim,
                gh_id=system.sim.config.gh_id,
                openid=openid,
                attempts=1,
                session=http,
            )
            sent_at[openid] = clock.now()
            result = await pusher.text(CONTENT)
            step.ack_s.append(result.latency_ms / 1000)
            if result.outcome == "success":
                step.accepted += 1
            else:
                step.failed.append(result.outcome)

        count = max(1, round(rate * step_s))
        start = time.monotonic()
        for n in range(count):
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                # Pacing the open-loop schedule of the load, not waiting for a result.
                await asyncio.sleep(delay)
            openid = f"oBench{tag}{int(rate)}x{n:06d}"
            system.openids.append(openid)
            tasks.append(asyncio.create_task(push(openid)))
        step.pushes = count
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            if all(system.sim.inbox(o) for o in sent_at):
                break
            # Polling the simulator for the last deliveries, within the drain bound.
            await asyncio.sleep(0.1)
    for openid, at in sent_at.items():
        inbox = system.sim.inbox(openid)
        if inbox:
            step.delivered_s.append(inbox[0].time - at)
        else:
            step.missing += 1
    return step


def peak_rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def print_step(step: Step) -> None:
    d = step.delivered_s
    print(
        f"{step.rate:7.0f}/s {step.pushes:7d} {step.accepted:9d} {len(d):10d} "
        f"{ms(percentile(step.ack_s, 50))} {ms(percentile(step.ack_s, 99))} "
        f"{ms(percentile(d, 50))} {ms(percentile(d, 99))} {ms(max(d) if d else float('nan'))}"
        f"  {'yes' if step.sustained else 'NO'}",
        flush=True,
    )
    if step.failed:
        kinds = {k: step.failed.count(k) for k in set(step.failed)}
        print(f"          pushes not answered success: {kinds}", flush=True)
    if step.missing:
        print(f"          replies not delivered within the drain: {step.missing}", flush=True)


async def main(args: argparse.Namespace) -> None:
    rates = [float(r) for r in args.rates.split(",")]
    # This process's own lines (bus connects, consumers) would interleave with the table.
    configure("bench", fmt="console", level="warning")
    tag = secrets.token_hex(3)
    with tempfile.TemporaryDirectory(prefix="wxkf-bench-system-") as tmp:
        started = time.monotonic()
        async with processes(Path(tmp), history=False, redis_db=REDIS_DB) as system:
            print(
                f"system up in {time.monotonic() - started:.1f} s: "
                f"{', '.join(f'{n} pid {p}' for n, p in system.pids.items())}",
                flush=True,
            )
            base = await baseline(system)
            p50, p99 = (percentile(base, p) * 1000 for p in (50, 99))
            print(
                "baseline, one send call straight to the simulator from this process: "
                f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                flush=True,
            )
            # Warm-up: the first pushes pay for connections, the token and first imports.
            warm = await run_step(system, 5, 2, args.drain_s, tag + "w")
            print(f"warm-up: {len(warm.delivered_s)} of {warm.pushes} delivered", flush=True)
            print(
                "\n   rate   pushes  accepted  delivered  ack p50  ack p99  "
                "del p50  del p99  del max  sustained (ms)",
                flush=True,
            )
            best: float | None = None
            for rate in rates:
                step = await run_step(system, rate, args.step_s, args.drain_s, tag)
                print_step(step)
                if not step.sustained:
                    break
                best = rate
            rss = {name: peak_rss_mb(pid) for name, pid in system.pids.items()}
        print()
        if best is None:
            print("highest rate sustained with p99 under 1 s: none of the rates tried")
        else:
            print(f"highest rate sustained with p99 push→delivered under 1 s: {best:.0f}/s")
        print(
            "peak RSS (VmHWM): "
            + ", ".join(f"{n} {v:.1f} MiB" if v else f"{n} ?" for n, v in rss.items())
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,20,40,60,80,100,120,160,200")
    parser.add_argument("--step-s", type=float, default=10.0)
    parser.add_argument("--drain-s", type=float, default=15.0)
    asyncio.run(main(parser.parse_args()))
