"""The whole system at fixed push rates: the benchmark that decides (figures in RESULTS.md).

    python bench/bench_system.py [--rates 50,100,200] [--step-s 20] [--drain-s 15]
                                  [--results bench/RESULTS.md | --no-results]

Starts ingress, router, sender and media each as its own process (``python -m ...``, log
level info, JSON logs) on RabbitMQ (a vhost of its own, deleted after) and Redis (db 15, this
run's keys removed after), with the WeChat simulator in this process (the e2e tests'
``processes`` deployment, whose observer also consumes every fact, to clean up after).

Each rate is one step of ``--step-s`` seconds, open loop (pushes leave on schedule whatever
the answers), every push from a user of its own (safe mode, XML, one attempt), in a fixed
mix that the shipped rules (``examples/rules.yaml``) answer as follows:

- text (70 %): "什么时候发货？" or "你好，在吗？", answered ``success``, then one text
  (faq-shipping or the fallback);
- enter (15 %): user_enter_tempsession, answered ``success``, then the welcome text (the
  user's first contact of the day);
- image (10 %): a tiny PNG, answered ``success``, then the fallback text (the archive is off);
- transfer (5 %): "转人工", answered ``transfer_customer_service``, then the agent rule's
  text "正在为您转接人工客服，请稍候…".

So every push expects one answer of its kind and one reply delivered to the simulator. A push
is *answered ok* when the answer is the expected one (HTTP 200 and a valid body); *delivered*
is the time from the push leaving to the simulator recording the first message to its user.
A rate is *sustained* when every push was answered ok, every reply was delivered within
``--drain-s`` after the step's last answer, and the delivered p99 is under 1 s.

CPU per push: utime + stime from ``/proc/<pid>/stat`` of each service process, of RabbitMQ
(the ``beam.smp`` owned by the ``rabbitmq`` user) and of Redis (the ``redis-server`` on port
6379), read when the step starts and when its drain ends, divided by the step's pushes. This
process (load generator and simulator) is shown beside them, outside the total.

Every run rewrites the "Latest" section of ``--results`` and appends one line per rate to its
"History" table; the rest of the file is kept. Needs RabbitMQ and Redis on loopback (``make
services``) and a quiet machine: the 1-minute load average before the run is recorded with
the figures. Bounded: about ``len(rates) × (step + drain)`` seconds plus the start.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from libs.common.observability.logging import configure  # noqa: E402 - after the path
from libs.common.wechat.api import SEND_PATH  # noqa: E402 - same
from services.simulator.pusher import Pusher, PushResult  # noqa: E402 - same
from tests.e2e.deployments import System, processes  # noqa: E402 - same

REDIS_DB = 15
REDIS_PORT = 6379
"""The Redis that ``processes`` connects to (its ``redis_url``), found by this port."""
JSON = {"Content-Type": "application/json"}
SUSTAINED_P99_S = 1.0
RESULTS = ROOT / "bench" / "RESULTS.md"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

SHIPPING, HELLO, AGENT = "什么时候发货？", "你好，在吗？", "转人工"
"""faq-shipping, the fallback, and the agent rule (a transfer with one text) of the rules."""

Push = Callable[[Pusher, str, int], Awaitable[PushResult]]


@dataclass(frozen=True)
class Kind:
    name: str
    expected: str
    """The answer WeChat must get (a pusher outcome)."""
    push: Push


def _text(pusher: Pusher, openid: str, n: int) -> Awaitable[PushResult]:
    return pusher.text(SHIPPING if n % 2 else HELLO, openid=openid)


def _enter(pusher: Pusher, openid: str, n: int) -> Awaitable[PushResult]:
    return pusher.enter_session(openid=openid)


def _image(pusher: Pusher, openid: str, n: int) -> Awaitable[PushResult]:
    return pusher.image(openid=openid)


def _transfer(pusher: Pusher, openid: str, n: int) -> Awaitable[PushResult]:
    return pusher.text(AGENT, openid=openid)


TEXT = Kind("text", "success", _text)
ENTER = Kind("enter", "success", _enter)
IMAGE = Kind("image", "success", _image)
TRANSFER = Kind("transfer", "transfer_customer_service", _transfer)
KINDS = (TEXT, ENTER, IMAGE, TRANSFER)
MIX = (
    *(TEXT, TEXT, ENTER, TEXT, IMAGE, TEXT, TEXT, ENTER, TEXT, TRANSFER),
    *(TEXT, TEXT, IMAGE, TEXT, ENTER, TEXT, TEXT, TEXT, TEXT, TEXT),
)
"""Twenty pushes, repeated: 14 texts, 3 enters, 2 images, 1 transfer, spread out."""


@dataclass
class Sample:
    """One push: what it was, how it was answered, when its reply arrived."""

    kind: Kind
    sent_at: float
    answer_s: float = float("nan")
    outcome: str = ""
    delivered_s: float | None = None
    refused: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome == self.kind.expected


@dataclass
class Step:
    rate: float
    samples: list[Sample] = field(default_factory=list)
    cpu_ms_per_push: dict[str, float] = field(default_factory=dict)
    """By process; ``bench`` is this process (load generator and simulator)."""

    def of(self, kind: Kind | None = None) -> list[Sample]:
        return [s for s in self.samples if kind is None or s.kind is kind]

    @property
    def answered_ok(self) -> int:
        return sum(s.ok for s in self.samples)

    @property
    def missing(self) -> int:
        return sum(s.delivered_s is None for s in self.samples)

    @property
    def answer_s(self) -> list[float]:
        return [s.answer_s for s in self.samples]

    @property
    def delivered_s(self) -> list[float]:
        return [s.delivered_s for s in self.samples if s.delivered_s is not None]

    @property
    def cpu_total(self) -> float:
        return sum(v for name, v in self.cpu_ms_per_push.items() if name != "bench")

    @property
    def sustained(self) -> bool:
        return (
            self.answered_ok == len(self.samples)
            and self.missing == 0
            and percentile(self.delivered_s, 99) < SUSTAINED_P99_S
        )


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# --- the processes and their CPU --------------------------------------------------------------


def pgrep(*args: str) -> list[int]:
    done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        ["pgrep", *args],  # noqa: S607 - procps's pgrep from PATH
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(pid) for pid in done.stdout.split()]


def backing_pids() -> dict[str, int]:
    """RabbitMQ's and Redis's processes; one that is not found unambiguously is left out."""
    found = {
        "rabbitmq": pgrep("-u", "rabbitmq", "-x", "beam.smp"),
        "redis": pgrep("-f", rf"^\S*redis-server \S*:{REDIS_PORT}( |$)"),
    }
    pids = {}
    for name, candidates in found.items():
        if len(candidates) == 1:
            pids[name] = candidates[0]
        else:
            print(f"warning: {name}'s process not measured (pgrep found {candidates})")
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    # The name (field 2) may hold spaces; the fields after its ")" start with field 3.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def peak_rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


# --- the load -------------------------------------------------------------------------------


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


async def run_step(
    system: System, pids: dict[str, int], rate: float, step_s: float, drain_s: float, tag: str
) -> Step:
    step = Step(rate=rate)
    by_openid: dict[str, Sample] = {}
    clock = system.sim.clock
    count = max(1, round(rate * step_s))
    cpu_before = cpu_now(pids)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=5)
    ) as http:
        pusher = system.pusher(attempts=1, session=http)

        async def push(kind: Kind, openid: str, n: int) -> None:
            sample = Sample(kind=kind, sent_at=clock.now())
            by_openid[openid] = sample
            result = await kind.push(pusher, openid, n)
            sample.answer_s = result.latency_ms / 1000
            last = result.answers[-1]
            # No valid answer: say what came instead (a timeout, a refused connection, a 503).
            failed = f"failed ({last.error or last.status})"
            sample.outcome = failed if result.outcome == "failed" else result.outcome

        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic()
        for n, kind in zip(range(count), itertools.cycle(MIX), strict=False):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                # Pacing the open-loop schedule of the load, not waiting for a result.
                await asyncio.sleep(delay)
            openid = f"oBench{tag}{int(rate)}x{n:06d}"
            system.openids.append(openid)
            tasks.append(asyncio.create_task(push(kind, openid, n)))
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            if all(system.sim.inbox(o) for o in by_openid):
                break
            # Polling the simulator for the last deliveries, within the drain bound.
            await asyncio.sleep(0.1)
    cpu_after = cpu_now(pids)
    for openid, sample in by_openid.items():
        inbox = system.sim.inbox(openid)
        if inbox:
            sample.delivered_s = inbox[0].time - sample.sent_at
        user = system.sim.users.get(openid)
        sample.refused = sum(user.refused.values()) if user else 0
    step.samples = [by_openid[o] for o in sorted(by_openid)]
    step.cpu_ms_per_push = {
        name: (cpu_after[name] - cpu_before[name]) * 1000 / count for name in pids
    }
    return step


# --- reporting ------------------------------------------------------------------------------


def print_step(step: Step) -> None:
    a, d = step.answer_s, step.delivered_s
    print(
        f"{step.rate:5.0f}/s {len(step.samples):6d} {step.answered_ok:6d} {len(d):9d} "
        f"{ms(percentile(a, 50)):>7} {ms(percentile(a, 99)):>7} "
        f"{ms(percentile(d, 50)):>7} {ms(percentile(d, 99)):>7}  "
        f"{'yes' if step.sustained else 'NO'}",
        flush=True,
    )
    for kind in KINDS:
        samples = step.of(kind)
        wrong = [s.outcome for s in samples if not s.ok]
        got = [s.delivered_s for s in samples if s.delivered_s is not None]
        line = (
            f"    {kind.name:8} {len(samples):5d} pushes, answer p99 "
            f"{ms(percentile([s.answer_s for s in samples], 99))} ms, delivered "
            f"{len(got)} p99 {ms(percentile(got, 99))} ms"
        )
        if wrong:
            line += f"; answered otherwise: { {o: wrong.count(o) for o in set(wrong)} }"
        print(line, flush=True)
    refused = sum(s.refused for s in step.samples)
    if step.missing or refused:
        print(f"    not delivered within the drain: {step.missing}; refused by WeChat: {refused}")
    cpu = ", ".join(f"{n} {v:.2f}" for n, v in step.cpu_ms_per_push.items() if n != "bench")
    print(
        f"    CPU ms per push: {cpu}; total {step.cpu_total:.2f} "
        f"(this process: {step.cpu_ms_per_push.get('bench', float('nan')):.2f})",
        flush=True,
    )


@dataclass(frozen=True)
class Run:
    command: str
    date: str
    revision: str
    machine: str
    load: float
    mix: str
    baseline: str
    rss: str


def revision() -> str:
    """The short commit, ``+dirty`` when tracked files differ (the results file aside)."""

    def git(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            ["git", *args],  # noqa: S607 - git from PATH, as make and CI find it
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/RESULTS.md")
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")


def machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({model})"


INTRO = """\
# System benchmark results

Figures of `bench/bench_system.py` (its docstring says what is pushed and measured). Each run
rewrites *Latest* and appends one line per rate to *History*. Compare runs with care: the
figures move with the machine's other load, recorded with each run.
"""
HISTORY = """\
## History

| date (UTC) | revision | load 1 min | rate | sustained | answer p99 ms | delivered p99 ms \
| CPU ms/push |
|---|---|---|---|---|---|---|---|
"""


def latest_section(run: Run, steps: list[Step], names: list[str]) -> str:
    lines = [
        "## Latest",
        "",
        f"- command: `{run.command}`",
        f"- date: {run.date} UTC; revision {run.revision}",
        f"- machine: {run.machine}; 1-minute load average before the run {run.load:.2f}",
        f"- mix: {run.mix}",
        f"- {run.baseline}",
        f"- peak RSS (VmHWM): {run.rss}",
        "",
        "| rate | pushes | answered ok | answer p50 / p99 ms | delivered | "
        "delivered p50 / p99 ms | sustained |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        a, d = s.answer_s, s.delivered_s
        lines.append(
            f"| {s.rate:.0f}/s | {len(s.samples)} | {s.answered_ok} | "
            f"{ms(percentile(a, 50))} / {ms(percentile(a, 99))} | {len(d)} | "
            f"{ms(percentile(d, 50))} / {ms(percentile(d, 99))} | "
            f"{'yes' if s.sustained else 'no'} |"
        )
    lines += [
        "",
        "CPU per push, ms (utime + stime over the step and its drain, per push sent; where"
        " replies were still undelivered at the drain's end, their work is partly missing):",
        "",
        "| rate | " + " | ".join(names) + " | total | load generator + simulator |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for s in steps:
        cells = " | ".join(f"{s.cpu_ms_per_push[n]:.2f}" for n in names)
        bench = s.cpu_ms_per_push.get("bench", float("nan"))
        lines.append(f"| {s.rate:.0f}/s | {cells} | {s.cpu_total:.2f} | {bench:.2f} |")
    return "\n".join(lines) + "\n"


def write_results(path: Path, run: Run, steps: list[Step], names: list[str]) -> None:
    """Rewrite the Latest section, append to History, keep everything else."""
    old = path.read_text(encoding="utf-8") if path.exists() else INTRO
    intro, _, rest = old.partition("## Latest\n")
    _, found, history = rest.partition("## History\n")
    history = "## History\n" + history if found else HISTORY
    rows = [
        f"| {run.date} | {run.revision} | {run.load:.2f} | {s.rate:.0f}/s | "
        f"{'yes' if s.sustained else 'no'} | {ms(percentile(s.answer_s, 99))} | "
        f"{ms(percentile(s.delivered_s, 99))} | {s.cpu_total:.2f} |"
        for s in steps
    ]
    text = (
        intro.rstrip("\n")
        + "\n\n"
        + latest_section(run, steps, names)
        + "\n"
        + history.rstrip("\n")
        + "\n"
        + "\n".join(rows)
        + "\n"
    )
    path.write_text(text, encoding="utf-8")


# --- the run --------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    rates = [float(r) for r in args.rates.split(",")]
    # This process's own lines (bus connects, consumers) would interleave with the table.
    configure("bench", fmt="console", level="warning")
    load = os.getloadavg()[0]
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    print(f"1-minute load average before the run: {load:.2f} on {os.cpu_count()} cores")
    tag = secrets.token_hex(3)
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="wxkf-bench-system-") as tmp:
        started = time.monotonic()
        async with processes(Path(tmp), history=False, redis_db=REDIS_DB) as system:
            pids = {**system.pids, **backing_pids(), "bench": os.getpid()}
            print(
                f"system up in {time.monotonic() - started:.1f} s: "
                f"{', '.join(f'{n} pid {p}' for n, p in pids.items())}",
                flush=True,
            )
            base = await baseline(system)
            baseline_line = (
                "baseline, one send call straight to the simulator from the load generator: "
                f"p50 {ms(percentile(base, 50))} ms, p99 {ms(percentile(base, 99))} ms"
            )
            print(baseline_line, flush=True)
            # Warm-up: the first pushes pay for connections, the token and first imports.
            warm = await run_step(system, pids, 5, 4, args.drain_s, tag + "w")
            print(f"warm-up: {len(warm.delivered_s)} of {len(warm.samples)} delivered")
            print(
                "\n rate   pushes     ok delivered  answer p50/p99 ms  delivered p50/p99 ms"
                "  sustained",
                flush=True,
            )
            for rate in rates:
                step = await run_step(system, pids, rate, args.step_s, args.drain_s, tag)
                print_step(step)
                steps.append(step)
            rss = {name: peak_rss_mb(pid) for name, pid in system.pids.items()}
    sustained = [s.rate for s in steps if s.sustained]
    print(
        "\nrates sustained (every push answered as expected, every reply delivered, p99 "
        f"under 1 s): {', '.join(f'{r:.0f}/s' for r in sustained) or 'none'}"
    )
    rss_line = ", ".join(f"{n} {v:.1f} MiB" if v else f"{n} ?" for n, v in rss.items())
    print(f"peak RSS (VmHWM): {rss_line}")
    if args.no_results:
        return
    shares = {k.name: MIX.count(k) * 100 // len(MIX) for k in KINDS}
    run = Run(
        command=shlex.join(["python", "bench/bench_system.py", *sys.argv[1:]]),
        date=date,
        revision=revision(),
        machine=machine(),
        load=load,
        mix=", ".join(f"{n} {p} %" for n, p in shares.items())
        + f"; {args.step_s:.0f} s per rate, drain up to {args.drain_s:.0f} s",
        baseline=baseline_line,
        rss=rss_line,
    )
    names = [n for n in pids if n != "bench"]
    write_results(Path(args.results), run, steps, names)
    print(f"written: {args.results}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200", help="pushes per second, one step each")
    parser.add_argument("--step-s", type=float, default=20.0, help="seconds of pushes per rate")
    parser.add_argument("--drain-s", type=float, default=15.0, help="wait for replies after")
    parser.add_argument("--results", default=str(RESULTS), help="the results file to update")
    parser.add_argument("--no-results", action="store_true", help="print only")
    asyncio.run(main(parser.parse_args()))
