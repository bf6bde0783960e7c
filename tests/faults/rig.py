"""wxkf under faults: its services as processes of their own, its broker and Redis of the test's.

A :class:`Rig` runs ingress, router and sender each as ``wxkf run NAME`` (what ``wxkf up``
and a Kubernetes pod run), any number of replicas of each, on a RabbitMQ node (or cluster)
and a Redis that belong to the test, so the test may stop, pause, block, kill and restart
them. WeChat is the simulator, in the test's process: its API takes the sends, and
:meth:`Rig.push` pushes as WeChat does in production (:data:`WECHAT_RETRIES`: 4 attempts,
5 s apart, each cut off at 5 s).

Every push is a text of its own (``q <tag> <n>``) that the suite's rules answer with one
text (``re: q <tag> <n>``), so what became of each push can be counted from the outside:
the answers WeChat got, the events on the bus, the decisions, the outcome facts and the
replies in each user's inbox at the simulator (:class:`Tally`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from libs.common import bus as bus_lib
from libs.common.bus import Bus, Delivery
from libs.common.schemas import AnyMessage, DecisionMade, Failed, Outcome, TextReceived
from libs.common.topology import EVENTS, QueueSpec
from libs.common.wechat.api import SEND_PATH
from services.simulator.app import create_app as create_sim
from services.simulator.app import running as running_sim
from services.simulator.clock import SimClock
from services.simulator.config import DEMO_AES_KEY, DEMO_TOKEN, SimConfig
from services.simulator.faults import Fault, FaultRule
from services.simulator.pusher import WECHAT_RETRIES, Pusher, PushResult, RetryPattern
from services.simulator.state import SimState
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 90.0
"""Python processes importing on two busy cores: tens of seconds are possible."""

RULES = """\
version: 1
timezone: Asia/Shanghai
rules:
  - name: agent
    match:
      text: {contains: ["转人工"]}
    reply: "agent: {text}"
    transfer: true
fallback:
  reply: "re: {text}"
"""
"""Every text gets one reply that repeats it, so each reply names the push it answers."""


def reply_to(text: str) -> str:
    return ("agent: " if "转人工" in text else "re: ") + text


COUNTS: list[str] = []
"""Each scenario's counts, shown together at the end of the run (conftest.py)."""


def counts(text: str) -> None:
    """Say what a scenario counted: printed now, and again in the run's summary."""
    print(text)
    COUNTS.append(text.strip())


# --- one service process ----------------------------------------------------------------------


class Service:
    """One process of one service: its JSON log lines and the port it listens on."""

    def __init__(self, name: str, index: int, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.index = index
        self.proc = proc
        self.lines: list[str] = []
        self.port: int | None = None
        """The public port (ingress's pushes)."""
        self.internal_port: int | None = None
        """Health, readiness and metrics."""
        self._reader = asyncio.create_task(self._read())

    @property
    def label(self) -> str:
        return f"{self.name}[{self.index}]"

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip()
            self.lines.append(text)
            if '"runner.listening"' in text:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    entry = json.loads(text)
                    if entry["app"] == "internal":
                        self.internal_port = int(entry["port"])
                    elif self.port is None:
                        self.port = int(entry["port"])

    async def listening(self) -> int:
        """The internal port (health, readiness, metrics), once every port it has is bound
        (ingress and media have a public one too; router and sender only the internal)."""

        def probe() -> int | None:
            if self.proc.returncode is not None:
                tail = "\n".join(self.lines[-15:])
                raise AssertionError(f"{self.label} exited with {self.proc.returncode}:\n{tail}")
            public = self.port is not None or self.name in ("router", "sender")
            return self.internal_port if public else None

        port = await eventually(
            probe, lambda p: p is not None, deadline_s=START_DEADLINE_S, what=f"{self.label} up"
        )
        assert port is not None
        return port

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def signal(self, signum: int) -> None:
        if self.alive:
            self.proc.send_signal(signum)

    async def exited(self, deadline_s: float = 60.0) -> int:
        async with asyncio.timeout(deadline_s):
            code = await self.proc.wait()
        await self._reader
        return code

    def events(self, name: str) -> list[dict[str, object]]:
        """The log lines whose event is ``name``, parsed."""
        found = []
        for line in self.lines:
            if f'"{name}"' in line:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("event") == name:
                        found.append(entry)
        return found


# --- what WeChat and the bus saw --------------------------------------------------------------


@dataclass
class Tally:
    """What became of every push, counted from the outside."""

    pushes: dict[str, PushResult] = field(default_factory=dict)
    """Text → WeChat's view of its push."""
    users: dict[str, str] = field(default_factory=dict)
    """Text → the openid that sent it."""
    events: dict[str, list[TextReceived]] = field(default_factory=lambda: defaultdict(list))
    """Text → every copy of its event seen on ``kf.events``."""
    decisions: dict[str, list[DecisionMade]] = field(default_factory=lambda: defaultdict(list))
    """Event id → its decision facts (a redelivery may repeat one)."""
    outcomes: dict[str, list[Outcome]] = field(default_factory=lambda: defaultdict(list))
    """Cause (event) id → the outcome facts of its commands."""

    def keep(self, msg: AnyMessage) -> None:
        if isinstance(msg, TextReceived):
            self.events[msg.content].append(msg)
        elif isinstance(msg, DecisionMade):
            self.decisions[msg.event_id].append(msg)
        elif isinstance(msg, Outcome):
            self.outcomes[msg.cause_id].append(msg)

    def accepted(self) -> list[str]:
        return [text for text, result in self.pushes.items() if result.ok]

    def gave_up(self) -> list[str]:
        return [text for text, result in self.pushes.items() if not result.ok]

    def event_id(self, text: str) -> str | None:
        copies = self.events.get(text)
        return copies[0].id if copies else None

    def ambiguous(self, text: str) -> list[Failed]:
        event = self.event_id(text)
        facts = self.outcomes.get(event, []) if event else []
        return [f for f in facts if isinstance(f, Failed) and f.errmsg.startswith("ambiguous")]


def forgotten(fact: Outcome) -> bool:
    """The report of a copy the store may have forgotten: it stands beside the command's own
    fact (the copy may repeat one that was sent), not instead of it."""
    return isinstance(fact, Failed) and "lost its memory" in fact.errmsg


@dataclass
class Report:
    """The counts a scenario prints, and every broken promise found."""

    pushes: int = 0
    gave_up: int = 0
    events: int = 0
    event_copies: int = 0
    decisions: int = 0
    replies: int = 0
    duplicates: int = 0
    ambiguous: int = 0
    forgotten: int = 0
    """Of ``ambiguous``: copies the store may have forgotten, reported instead of sent."""
    pending: int = 0
    problems: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Replies that were not delivered, with the facts that say why (not a broken promise
    in itself: WeChat may refuse)."""
    unpublished: list[str] = field(default_factory=list)
    """Accepted pushes whose event was not seen on the bus (yet)."""
    failures: int = 0
    """Pushes without a reply whose commands reported why (refused, failed, ambiguous)."""
    per_user: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Openid → its pushes, events, decisions, replies and failures."""

    def line(self) -> str:
        return (
            f"pushes={self.pushes} gave_up={self.gave_up} events={self.events} "
            f"(copies {self.event_copies}) decisions={self.decisions} replies={self.replies} "
            f"duplicates={self.duplicates} ambiguous={self.ambiguous} "
            f"(forgotten {self.forgotten}) failures={self.failures} pending={self.pending}"
        )


class Watcher:
    """Every fact on ``kf.events``, from a queue of the test's own."""

    def __init__(self, bus: Bus, tally: Tally) -> None:
        self.bus = bus
        self.tally = tally
        self.spec = QueueSpec(
            name=f"wxkf.faults.watch.{uuid.uuid4().hex[:6]}",
            exchange=EVENTS,
            bindings=("#",),
            max_attempts=1,
        )

    async def start(self) -> None:
        await self.bus.consume(self.spec, self._keep, prefetch=256)

    async def _keep(self, msg: AnyMessage, delivery: Delivery) -> None:
        self.tally.keep(msg)


# --- the rig ----------------------------------------------------------------------------------


@dataclass
class Rig:
    folder: Path
    broker_url: str
    store_url: str
    sim: SimState
    sim_url: str
    env: dict[str, str]
    bus: Bus
    tally: Tally
    services: dict[str, list[Service]] = field(default_factory=lambda: defaultdict(list))
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    _count: int = 0
    _turn: int = 0
    _http: aiohttp.ClientSession | None = None

    # -- processes -----------------------------------------------------------------------------

    async def start(self, name: str, **overrides: str) -> Service:
        """One more process of service ``name``, ready when this returns."""
        index = len(self.services[name])
        if name == "ingress" and self.live("ingress"):
            # A second replica beside the first, as behind a load balancer: a port of its own.
            overrides = {"ingress_port": str(free_port()), **overrides}
        env = {**self.env, **{f"WXKF_{k.upper()}": v for k, v in overrides.items()}}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "run",
            name,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        service = Service(name, index, proc)
        self.services[name].append(service)
        port = await service.listening()
        await self.ready(port)
        return service

    async def ready(self, port: int) -> None:
        async def status() -> int:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    return response.status
            return 0

        await eventually(status, lambda s: s == 200, deadline_s=START_DEADLINE_S, what="ready")

    def live(self, name: str) -> list[Service]:
        return [s for s in self.services[name] if s.alive]

    async def kill(self, name: str, *, index: int | None = None) -> Service:
        """SIGKILL one process of ``name`` (the latest live one unless ``index``)."""
        service = self._pick(name, index)
        service.signal(signal.SIGKILL)
        await service.exited()
        return service

    async def stop(self, name: str, *, index: int | None = None) -> tuple[Service, float]:
        """SIGTERM one process and wait until it exits; the seconds it took."""
        service = self._pick(name, index)
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        code = await service.exited()
        assert code == 0, f"{service.label} exited {code} after SIGTERM"
        return service, time.monotonic() - started

    def _pick(self, name: str, index: int | None) -> Service:
        live = self.live(name)
        assert live, f"no live process of {name}"
        return live[-1] if index is None else self.services[name][index]

    @property
    def push_url(self) -> str:
        """The URL WeChat pushes to: the first ingress's port, which a restart keeps (as a
        Service's address), or, with replicas live, each in turn (as a load balancer)."""
        ports = [s.port for s in self.live("ingress") if s.port is not None]
        self._turn += 1
        port = ports[self._turn % len(ports)] if ports else self.env["WXKF_INGRESS_PORT"]
        return f"http://127.0.0.1:{port}/wechat"

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=10)
            )
        return self._http

    async def metrics(self, service: Service) -> dict[str, float]:
        """The process's /metrics as ``name{labels}`` → value."""
        async with self.http.get(f"http://127.0.0.1:{service.internal_port}/metrics") as response:
            text = await response.text()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[key] = float(value)
        return values

    # -- WeChat ----------------------------------------------------------------------------------

    def users(self, count: int) -> list[str]:
        return [f"oFault{self.tag}{n:06d}" for n in range(count)]

    def next_text(self, prefix: str = "q") -> str:
        self._count += 1
        return f"{prefix} {self.tag} {self._count}"

    async def push(
        self, openid: str, text: str, *, pattern: RetryPattern = WECHAT_RETRIES
    ) -> PushResult:
        """Push ``text`` from ``openid`` as WeChat does, to whichever ingress is live now."""
        self.tally.users[text] = openid
        pusher = Pusher(
            self.push_url,
            token=DEMO_TOKEN,
            appid=self.sim.config.appid,
            aes_key=DEMO_AES_KEY,
            mode="safe",
            fmt="xml",
            sim=self.sim,
            gh_id=self.sim.config.gh_id,
            openid=openid,
            attempts=pattern.attempts,
            timeout_s=pattern.timeout_s,
            retry_interval_s=pattern.interval_s,
            session=self.http,
        )
        result = await pusher.text(text)
        self.tally.pushes[text] = result
        return result

    async def burst(
        self, users: list[str], *, per_user: int, rate: float, prefix: str = "q"
    ) -> list[PushResult]:
        """``per_user`` texts from each user, ``rate`` pushes a second in all (open loop: a
        push leaves on schedule whatever became of the ones before)."""
        tasks: list[asyncio.Task[PushResult]] = []
        start = time.monotonic()
        n = 0
        for _ in range(per_user):
            for openid in users:
                due = start + n / rate
                n += 1
                # Pacing the schedule of the load, not waiting for a result.
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                tasks.append(asyncio.create_task(self.push(openid, self.next_text(prefix))))
        return list(await asyncio.gather(*tasks))

    # -- the count -------------------------------------------------------------------------------

    def inboxes(self) -> dict[str, list[str]]:
        users = set(self.tally.users.values())
        return {
            openid: [str(d.body.get("content", "")) for d in self.sim.inbox(openid)]
            for openid in users
        }

    def report(self, texts: Iterable[str] | None = None) -> Report:
        """Check every promise for the pushes ``texts`` (all of them by default)."""
        tally = self.tally
        chosen = list(tally.pushes) if texts is None else list(texts)
        inboxes = self.inboxes()
        received: Counter[tuple[str, str]] = Counter(
            (openid, content) for openid, items in inboxes.items() for content in items
        )
        report = Report(pushes=len(chosen))
        for text in chosen:
            result = tally.pushes[text]
            openid = tally.users[text]
            copies = tally.events.get(text, [])
            event = copies[0].id if copies else None
            report.event_copies += len(copies)
            report.events += 1 if copies else 0
            counts = report.per_user[openid]
            counts["pushes"] += 1
            counts["events"] += 1 if copies else 0
            if event is not None and tally.decisions.get(event):
                report.decisions += 1
                counts["decisions"] += 1
            got = received[(openid, reply_to(text))]
            report.replies += min(got, 1)
            counts["replies"] += min(got, 1)
            if got > 1:
                report.duplicates += got - 1
                report.problems.append(f"{text!r}: its reply was delivered {got} times")
            ambiguous = tally.ambiguous(text)
            report.ambiguous += len(ambiguous)
            if len({f.command_id for f in ambiguous}) != len(ambiguous):
                report.problems.append(f"{text!r}: more than one ambiguous fact per command")
            facts = tally.outcomes.get(event, []) if event else []
            report.forgotten += sum(1 for f in facts if forgotten(f))
            kinds = {(f.command_id, type(f).__name__) for f in facts if not forgotten(f)}
            if len(kinds) > len({f.command_id for f in facts}):
                report.problems.append(f"{text!r}: a command ended in two kinds of fact {kinds}")
            if event is not None and not tally.decisions.get(event) and got:
                report.problems.append(f"{text!r}: answered without a decision on the bus")
            if not result.ok:
                report.gave_up += 1
                counts["gave_up"] += 1
                statuses = {a.status for a in result.answers}
                if statuses != {503}:
                    report.problems.append(
                        f"{text!r}: WeChat gave up after answers {_answers(result)} (not all 503)"
                    )
                continue
            if event is None:
                # Kept in the spool, or still on its way: lost only if it never comes.
                report.pending += 1
                report.unpublished.append(f"{text!r}: accepted ({result.outcome}), not on the bus")
                continue
            if got == 0 and not ambiguous and not facts:
                report.pending += 1
                continue
            if got == 0:
                report.failures += 1
                counts["failures"] += 1
            if got == 0 and not ambiguous:
                report.refused.append(f"{text!r}: " + "; ".join(fact_line(f) for f in facts))
        return report

    async def settled(
        self, texts: Iterable[str] | None = None, *, deadline_s: float = 60.0
    ) -> Report:
        """Wait until every accepted push of ``texts`` ended (its reply delivered, or a fact
        saying why not); the report, checked."""
        chosen = list(self.tally.pushes) if texts is None else list(texts)

        def probe() -> Report:
            return self.report(chosen)

        try:
            return await eventually(
                probe, lambda r: r.pending == 0, deadline_s=deadline_s, every_s=0.25, what="settled"
            )
        except AssertionError:
            report = self.report(chosen)
            # Accepted and never published: the one loss there is.
            report.problems.extend(report.unpublished)
            return report

    def log_tail(self, lines: int = 12) -> str:
        """Each process's last warnings and errors (what a failed scenario's message shows)."""
        parts = []
        for group in self.services.values():
            for service in group:
                loud = [
                    line
                    for line in service.lines
                    if '"level": "info"' not in line and '"level": "debug"' not in line
                ]
                parts.append(f"--- {service.label}\n" + "\n".join(loud[-lines:]))
        return "\n".join(parts)

    async def close(self) -> None:
        for group in self.services.values():
            for service in group:
                service.signal(signal.SIGKILL)
        for group in self.services.values():
            for service in group:
                with contextlib.suppress(TimeoutError):
                    await service.exited(10)
                # Every line, for a failed scenario's post-mortem (pytest keeps the folder).
                log = self.folder / f"{service.name}-{service.index}.log"
                log.write_text("\n".join(service.lines) + "\n", encoding="utf-8")
        if self._http is not None:
            await self._http.close()


def fact_line(fact: Outcome) -> str:
    why = getattr(fact, "reason", None) or getattr(fact, "errmsg", "")
    return f"{fact.routing_key()} {why} (attempts {fact.attempts})"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _answers(result: PushResult) -> str:
    return ", ".join(str(a.status or a.error) for a in result.answers)


def service_env(
    *, sim: SimState, sim_url: str, broker_url: str, store_url: str, rules: Path
) -> dict[str, str]:
    values = {
        "appid": sim.config.appid,
        "app_secret": sim.config.secret,
        "token": DEMO_TOKEN,
        "aes_key": DEMO_AES_KEY,
        "push_mode": "safe",
        "push_format": "xml",
        "wechat_api_base": sim_url,
        "bus_url": broker_url,
        "store_url": store_url,
        "rules": str(rules),
        # Ingress keeps one port across restarts, as a Service's address does: WeChat pushes
        # to one URL.
        "ingress_port": str(free_port()),
        # Health, readiness and metrics: a port of each process's own.
        "internal_port": "0",
        "log_level": "info",
        "log_format": "json",
        "shutdown_grace_s": "10",
        # A call abandoned by a killed sender is known to be ambiguous this long after it
        # began (above the 11 s a call and its token retry may take).
        "inflight_stale_s": "15",
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("WXKF_")}
    return base | {"WXKF_" + key.upper(): value for key, value in values.items()}


@contextlib.asynccontextmanager
async def rig(
    folder: Path,
    *,
    broker_url: str,
    store_url: str,
    services: dict[str, int] | None = None,
    config: SimConfig | None = None,
    api_latency_ms: float = 0.0,
    api_faults: FaultRule | None = None,
) -> AsyncIterator[Rig]:
    """A running system: ``services`` maps each name to its replicas (one of each of
    ingress, router and sender by default); WeChat's send API answers ``api_latency_ms``
    late (the message is delivered at once), so that a kill finds calls in flight, or fails
    as ``api_faults`` says."""
    tag = uuid.uuid4().hex[:8]
    config = config or SimConfig(appid=f"wx{tag}{tag}", gh_id=f"gh_{tag}")
    sim = SimState(config, clock=SimClock())
    if api_latency_ms:
        sim.faults.add(
            FaultRule(path=SEND_PATH, rate=1.0, outcomes=[Fault(latency_ms=api_latency_ms)])
        )
    if api_faults is not None:
        sim.faults.add(api_faults)
    rules = folder / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    async with running_sim(create_sim(state=sim)) as sim_url:
        env = service_env(
            sim=sim, sim_url=sim_url, broker_url=broker_url, store_url=store_url, rules=rules
        )
        bus = await bus_lib.connect(broker_url)
        tally = Tally()
        system = Rig(
            folder=folder,
            broker_url=broker_url,
            store_url=store_url,
            sim=sim,
            sim_url=sim_url,
            env=env,
            bus=bus,
            tally=tally,
        )
        try:
            await bus.declare()
            await Watcher(bus, tally).start()
            wanted = services or {"ingress": 1, "router": 1, "sender": 1}
            # The first of each service, then the other replicas (an ingress replica takes a
            # port of its own once the first holds the one WeChat knows).
            await asyncio.gather(*(system.start(name) for name in wanted))
            await asyncio.gather(
                *(system.start(name) for name, count in wanted.items() for _ in range(count - 1))
            )
            yield system
        finally:
            await system.close()
            await bus.close()
