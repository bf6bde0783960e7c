"""The whole system, two ways, for the end-to-end tests.

* ``processes``: ingress, router, sender, media and the history extension each as its own
  process (``python -m ...``, as Kubernetes runs them) on the real RabbitMQ (a vhost of the
  run's own, deleted after) and Redis (db :data:`REDIS_DB`, keys of this run removed after).
* ``memory``: the four services in this process through ``run_services`` (what ``wxkf run
  all`` does) on ``memory://``, with the history extension on the same in-process bus.

Either way the WeChat simulator runs in the test process, on a port of its own, so tests
read what each user received straight from its state; and the test holds a bus client of
its own, to watch every fact (the observer) and to publish commands as an extension would.

Everything a run creates carries names of its own (an appid, openids, a tint in the asset
images, queue names), so runs on the shared broker and Redis may overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from libs.common import bus as bus_lib
from libs.common.bus import Bus
from libs.common.runner import running as running_apps
from libs.common.settings import load
from services.composition import load_settings
from services.demo.observer import Observer
from services.demo.ports import claim
from services.launcher import run_services
from services.shipped_images import ASSETS, write_assets
from services.simulator.app import create_app as create_sim
from services.simulator.app import running as running_sim
from services.simulator.clock import SimClock
from services.simulator.config import DEMO_AES_KEY, DEMO_TOKEN, SimConfig
from services.simulator.pusher import Pusher
from services.simulator.state import SimState
from tests.support import rabbit
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
REDIS_DB = int(os.environ.get("WXKF_TEST_E2E_REDIS_DB", "14"))
"""The e2e runs keep to a Redis database of their own (the other suites use db 0)."""
START_DEADLINE_S = 90.0
"""Five Python processes importing on two busy cores: minutes are possible, seconds usual."""
SHORT_TTL_S = 900
"""Keys the run cannot name afterwards expire soon (plans, ledger, dedupe)."""

CHILDREN = ("media", "ingress", "router", "sender", "history")


@dataclass
class System:
    """A running wxkf, its simulated WeChat, and the test's view of its bus."""

    kind: str
    appid: str
    push_url: str
    history_url: str
    sim: SimState
    sim_url: str
    bus: Bus
    observer: Observer
    asset_tint: int = 0
    """Colours the asset images of this run (see :mod:`services.shipped_images`)."""
    openids: list[str] = field(default_factory=list)
    logs: dict[str, list[str]] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    """The process of each service (the processes deployment only)."""

    def new_openid(self) -> str:
        openid = "oE2e" + uuid.uuid4().hex[:24]
        self.openids.append(openid)
        return openid

    def pusher(self, openid: str | None = None, **options: Any) -> Pusher:
        """WeChat pushing (for ``openid``, or per push) in safe mode, XML, telling the simulator
        (in-process) that the user acted, which opens the reply window as on WeChat;
        ``options`` go to the :class:`Pusher` (attempts, session, ...)."""
        if openid is not None:
            options["openid"] = openid
        return Pusher(
            self.push_url,
            token=DEMO_TOKEN,
            appid=self.appid,
            aes_key=DEMO_AES_KEY,
            mode="safe",
            fmt="xml",
            sim=self.sim,
            gh_id=self.sim.config.gh_id,
            **options,
        )

    def log_tail(self, lines: int = 15) -> str:
        """The last log lines of every process, for a failure's message."""
        parts = []
        for name, logged in self.logs.items():
            parts.append(f"--- {name}\n" + "\n".join(logged[-lines:]))
        return "\n".join(parts)


def run_config() -> SimConfig:
    """The simulated mini program of one run: an appid (and so a token key) of its own."""
    tag = secrets.token_hex(8)
    return SimConfig(appid=f"wx{tag}", secret=secrets.token_hex(16), gh_id=f"gh_{tag[:12]}")


def service_values(config: SimConfig, sim_url: str, assets: Path) -> dict[str, str]:
    """What every service of a run is told, by field name."""
    return {
        "appid": config.appid,
        "app_secret": config.secret,
        "token": DEMO_TOKEN,
        "aes_key": DEMO_AES_KEY,
        "push_mode": "safe",
        "push_format": "xml",
        "wechat_api_base": sim_url,
        "assets_dir": str(assets),
        "router_plan_ttl_s": str(SHORT_TTL_S),
        "router_session_ttl_s": str(SHORT_TTL_S),
        "ledger_ttl_s": str(SHORT_TTL_S),
        "max_push_age_s": "600",
        "dedupe_ttl_s": str(SHORT_TTL_S),
        "shutdown_grace_s": "5",
        # Media refuses to start without it; the sender's calls to media carry it.
        "internal_token": secrets.token_urlsafe(16),
    }


# --- one process per service ----------------------------------------------------------------


PUBLIC = ("ingress", "media", "history")
"""The services with a public port; the router and the sender have only the internal one."""


class Child:
    """One service process: its JSON log lines (stderr), and the ports it bound (its own, and
    the internal one: health, readiness, metrics)."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.lines: list[str] = []
        self.port: int | None = None
        self.internal: int | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip()
            self.lines.append(text)
            if self.port is None or self.internal is None:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    entry = json.loads(text)
                    if entry.get("event") == "runner.listening":
                        if entry.get("app") == "internal":
                            self.internal = int(entry["port"])
                        else:
                            self.port = int(entry["port"])

    async def bound(self) -> int:
        """The service's own port, once it and the internal port listen (the internal port of
        a service without a public one)."""

        def probe() -> int | None:
            if self.proc.returncode is not None:
                tail = "\n".join(self.lines[-10:])
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            if self.internal is None:
                return None
            return self.port if self.name in PUBLIC else self.internal

        port = await eventually(
            probe, lambda p: p is not None, deadline_s=START_DEADLINE_S, what=f"{self.name} up"
        )
        assert port is not None
        return port

    async def internal_url(self, path: str = "") -> str:
        await self.bound()
        return f"http://127.0.0.1:{self.internal}{path}"

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self._reader


async def spawn(name: str, env: dict[str, str]) -> Child:
    module = "examples.extension" if name == "history" else f"services.{name}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("WXKF_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        cwd=ROOT,
        env=base | env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return Child(name, proc)


def environment(values: dict[str, str]) -> dict[str, str]:
    return {"WXKF_" + key.upper(): value for key, value in values.items()}


async def ready(url: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:

        async def status() -> int:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url) as response:
                    return response.status
            return 0

        await eventually(status, lambda s: s == 200, deadline_s=START_DEADLINE_S, what=url)


def redis_url(db: int) -> str:
    return f"redis://127.0.0.1:6379/{db}"


@contextlib.asynccontextmanager
async def processes(
    tmp: Path, *, history: bool = True, redis_db: int = REDIS_DB, log_level: str = "info"
) -> AsyncIterator[System]:
    """The services as processes (and the history extension, unless ``history`` is False);
    ``System.pids`` names each process."""
    config = run_config()
    tint = secrets.randbelow(256)
    sim = SimState(config, clock=SimClock())
    vhost = await asyncio.to_thread(rabbit.add_vhost, "wxkf-e2e")
    amqp_url = rabbit.url(vhost)
    children: dict[str, Child] = {}
    system: System | None = None
    try:
        async with running_sim(create_sim(state=sim)) as sim_url:
            values = service_values(config, sim_url, tmp / "assets")
            write_assets(tmp / "assets", tint=tint)
            env = environment(
                {
                    **values,
                    "bus_url": amqp_url,
                    "store_url": redis_url(redis_db),
                    "log_format": "json",
                    "log_level": log_level,
                    "ingress_port": "0",
                    "media_port": "0",
                    "history_port": "0",
                    "internal_port": "0",
                    "history_db": str(tmp / "history.db"),
                    "history_queue": "wxkf.ext.history.e2e",
                }
            )
            # Media first: the sender needs its address.
            children["media"] = await spawn("media", env)
            media_port = await children["media"].bound()
            env["WXKF_MEDIA_URL"] = f"http://127.0.0.1:{media_port}"
            for name in CHILDREN[1:]:
                if name != "history" or history:
                    children[name] = await spawn(name, env)
            ports = {name: await child.bound() for name, child in children.items()}
            await asyncio.gather(
                *[ready(await child.internal_url("/readyz")) for child in children.values()]
            )
            bus = await bus_lib.connect(amqp_url)
            try:
                observer = Observer(bus, queue="wxkf.e2e.observer")
                await observer.start()
                system = System(
                    kind="processes",
                    appid=config.appid,
                    push_url=f"http://127.0.0.1:{ports['ingress']}/wechat",
                    history_url=f"http://127.0.0.1:{ports['history']}" if history else "",
                    sim=sim,
                    sim_url=sim_url,
                    bus=bus,
                    observer=observer,
                    asset_tint=tint,
                    logs={name: child.lines for name, child in children.items()},
                    pids={name: child.proc.pid for name, child in children.items()},
                )
                yield system
            finally:
                await asyncio.gather(*(child.stop() for child in children.values()))
                await bus.close()
    finally:
        for child in children.values():
            if child.proc.returncode is None:
                child.proc.kill()
        await asyncio.to_thread(rabbit.delete_vhost, vhost)
        if system is not None:
            await forget(system, redis_url(redis_db))


async def forget(system: System, url: str) -> None:
    """Remove every Redis key of this run: each has a part (between colons) that is the run's
    appid, one of its openids, a bus message id, or an image of the run (hash or media id)."""
    names = {system.appid, *system.openids}
    for seen in system.observer.seen:
        names.add(seen.msg.id)
        cause = getattr(seen.msg, "cause_id", "")
        if cause:
            names.add(cause)
        event = getattr(seen.msg, "event_id", "")
        if event:
            names.add(event)
    names.update(hashlib.sha256(draw(system.asset_tint)).hexdigest() for draw in ASSETS.values())
    names.update(system.sim.media.items)
    client = aioredis.Redis.from_url(url)
    try:
        doomed = [
            key
            async for key in client.scan_iter(count=1000)
            if not names.isdisjoint(key.decode("utf-8", "replace").split(":"))
        ]
        for start in range(0, len(doomed), 500):
            await client.delete(*doomed[start : start + 500])
    finally:
        await client.aclose()


# --- one process, memory:// -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def in_memory(tmp: Path) -> AsyncIterator[System]:
    from examples.extension.app import create_app as create_history
    from examples.extension.settings import HistorySettings

    config = run_config()
    sim = SimState(config, clock=SimClock())
    memory_url = f"memory://e2e-{uuid.uuid4().hex}"
    async with running_sim(create_sim(state=sim)) as sim_url:
        values = service_values(config, sim_url, tmp / "assets")
        write_assets(tmp / "assets")
        ports = claim({"ingress": 0, "media": 0, "internal": 0})
        settings = load_settings(
            ("ingress", "router", "sender", "media"),
            {},
            **values,
            bus_url=memory_url,
            store_url=memory_url,
            media_url=f"http://127.0.0.1:{ports['media']}",
            ingress_port=ports["ingress"],
            media_port=ports["media"],
            internal_port=ports["internal"],
        )
        stop = asyncio.Event()
        services = asyncio.create_task(run_services(settings, stop=stop))
        history_bus = await bus_lib.connect(memory_url)
        bus = await bus_lib.connect(memory_url)
        try:
            await ready(f"http://127.0.0.1:{ports['internal']}/readyz")
            history = create_history(
                load(
                    HistorySettings,
                    {},
                    appid=config.appid,
                    bus_url=memory_url,
                    history_db=str(tmp / "history.db"),
                ),
                bus=history_bus,
            )
            async with running_apps([(history, 0)], shutdown_grace_s=5) as (history_port,):
                observer = Observer(bus, queue="wxkf.e2e.observer")
                await observer.start()
                yield System(
                    kind="memory",
                    appid=config.appid,
                    push_url=f"http://127.0.0.1:{ports['ingress']}/wechat",
                    history_url=f"http://127.0.0.1:{history_port}",
                    sim=sim,
                    sim_url=sim_url,
                    bus=bus,
                    observer=observer,
                )
                await bus.stop_consuming()
        finally:
            stop.set()
            await services
            await bus.close()
            await history_bus.close()
