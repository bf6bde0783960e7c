"""A running wxkf for the live monitoring test: the four services and the WeChat simulator as
separate processes (``wxkf up``'s processes) on the real RabbitMQ and Redis, and a real
Prometheus scraping them and RabbitMQ's Prometheus plugin the way the PodMonitors do.

Isolation on the shared machine: a RabbitMQ vhost of its own, a Redis database leased for the
run (other suites use database 0), an AppID and openids of its own, free ports, temporary
directories. Everything is stopped and removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from services.simulator.config import DEMO_AES_KEY, DEMO_TOKEN
from services.up import processes
from services.up.plan import plan
from tests.deploy import monitoring_files as files
from tests.support import rabbit
from tests.support.waiting import eventually

RABBIT_METRICS = f"127.0.0.1:{os.environ.get('WXKF_TEST_RABBIT_METRICS_PORT', '15692')}"
"""RabbitMQ's Prometheus plugin (scripts/ensure-tools.sh turns it on)."""
NAMESPACE = "wxkf-monitoring-test"
"""The namespace label every target gets, as the PodMonitors give the cluster's."""
SERVICES = ("ingress", "router", "sender", "media")


def free_ports(*names: str) -> dict[str, int]:
    """A port free now for each name; all held until every one is chosen, so none repeats."""
    held: list[socket.socket] = []
    try:
        for _ in names:
            sock = socket.socket()
            held.append(sock)
            # Every interface, as the services bind; "" is INADDR_ANY.
            sock.bind(("", 0))
        return {name: sock.getsockname()[1] for name, sock in zip(names, held, strict=True)}
    finally:
        for sock in held:
            sock.close()


@dataclass
class System:
    """The ports and identities of one running system."""

    appid: str
    vhost: str
    ports: dict[str, int]
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    internal: dict[str, int] = field(default_factory=dict)
    """Each service's internal port (health, readiness, metrics), once it runs."""
    internal_token: str = field(default_factory=lambda: secrets.token_hex(16))
    """The media API's bearer token (media refuses to start without one)."""

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def internal_url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.internal[name]}{path}"

    @property
    def push_url(self) -> str:
        return self.url("ingress", "/wechat")


def system_environment(system: System, store_url: str, rules: Path) -> dict[str, str]:
    ports = system.ports
    overrides = {
        "WXKF_APPID": system.appid,  # the simulator reads it too
        "WXKF_TOKEN": DEMO_TOKEN,
        "WXKF_AES_KEY": DEMO_AES_KEY,
        "WXKF_BUS_URL": rabbit.url(system.vhost),
        "WXKF_STORE_URL": store_url,
        "WXKF_SIM_PORT": str(ports["simulator"]),
        "WXKF_WECHAT_API_BASE": system.url("simulator"),
        "WXKF_INGRESS_PORT": str(ports["ingress"]),
        "WXKF_MEDIA_PORT": str(ports["media"]),
        "WXKF_INTERNAL_PORT": "0",
        "WXKF_INTERNAL_TOKEN": system.internal_token,
        "WXKF_MEDIA_URL": system.url("media"),
        "WXKF_RULES": str(rules),
        "WXKF_ASSETS_DIR": str(system.workdir / "assets"),
        "WXKF_MEDIA_CACHE_DIR": str(system.workdir / "cache"),
        "WXKF_ARCHIVE_DIR": str(system.workdir / "archive"),
        # Short backoff, so that a command failing every attempt is dead-lettered in seconds.
        "WXKF_RETRY_BASE_S": "0.02",
        # Whatever the cleanup misses expires soon.
        "WXKF_DEDUPE_TTL_S": "900",
        "WXKF_ROUTER_PLAN_TTL_S": "900",
        "WXKF_ROUTER_SESSION_TTL_S": "900",
        "WXKF_LEDGER_TTL_S": "900",
        "WXKF_LOG_FORMAT": "console",
        "WXKF_UP_DIR": str(system.workdir / "up"),
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("WXKF_")}
    return {**base, **overrides}


@contextlib.asynccontextmanager
async def running(system: System) -> AsyncIterator[None]:
    """The simulator and the four services, each its own process, until the block ends."""
    stop = asyncio.Event()
    made = plan(system.env)
    system.internal = made.internal
    task = asyncio.create_task(processes.run(made, stop=stop, ready_timeout_s=90))

    async def all_ready() -> bool:
        if task.done():
            outcome = task.result()
            raise AssertionError(f"the processes stopped before they were ready: {outcome}")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            for name in SERVICES:
                try:
                    async with http.get(system.internal_url(name, "/readyz")) as response:
                        if response.status != 200:
                            return False
                except (aiohttp.ClientError, TimeoutError):
                    return False
        return True

    try:
        await eventually(all_ready, deadline_s=150, every_s=0.3, what="every service ready")
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=120)


def prometheus_config(system: System, rabbit_vhost_regex: str) -> dict[str, Any]:
    """Scrape jobs named and labelled as the PodMonitors name and label them in a cluster."""
    jobs: list[dict[str, Any]] = [
        {
            "job_name": f"wxkf-{name}",
            "static_configs": [
                {
                    "targets": [f"127.0.0.1:{system.internal[name]}"],
                    "labels": {"namespace": NAMESPACE, "pod": f"wxkf-{name}-0"},
                }
            ],
        }
        for name in SERVICES
    ]
    jobs.append(
        {
            # With prometheus.return_per_object_metrics = true (the cluster's setting) /metrics
            # serves what /metrics/per-object serves here without changing the shared broker.
            "job_name": "wxkf-rabbitmq",
            "metrics_path": "/metrics/per-object",
            "scrape_interval": "2s",
            "scrape_timeout": "2s",
            "static_configs": [
                {
                    "targets": [RABBIT_METRICS],
                    "labels": {"namespace": NAMESPACE, "pod": "wxkf-rabbitmq-server-0"},
                }
            ],
            # The broker is shared: keep this run's vhost only.
            "metric_relabel_configs": [
                {"source_labels": ["vhost"], "regex": rabbit_vhost_regex, "action": "keep"}
            ],
        }
    )
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(files.RULES)],
        "scrape_configs": jobs,
    }


@dataclass
class Prometheus:
    url: str
    process: asyncio.subprocess.Process
    started: float

    async def api(self, path: str, **params: str) -> Any:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(f"{self.url}/api/v1/{path}", params=params) as response,
        ):
            body = await response.json()
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus refused {path} {params}: {body}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result


@contextlib.asynccontextmanager
async def prometheus(system: System, workdir: Path) -> AsyncIterator[Prometheus]:
    exe = shutil.which("prometheus")
    assert exe, "prometheus is not installed: run `make tools` (scripts/ensure-tools.sh)"
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(system, re.escape(system.vhost))))
    port = free_ports("prometheus")["prometheus"]
    process = await asyncio.create_subprocess_exec(
        exe,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = Prometheus(url=f"http://127.0.0.1:{port}", process=process, started=time.time())

    async def ready() -> bool:
        if process.returncode is not None:
            assert process.stderr is not None
            raise AssertionError(f"prometheus exited: {(await process.stderr.read()).decode()}")
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
                http.get(f"{server.url}/-/ready") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    try:
        await eventually(ready, deadline_s=60, every_s=0.2, what="prometheus ready")
        yield server
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def fetch_text(url: str) -> str:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(url) as response,
    ):
        assert response.status == 200, f"{url} answered {response.status}"
        return await response.text()


def exposition_names(text: str) -> set[str]:
    """Sample names an exposition declares (``# TYPE``, suffixes included) or carries."""
    names: set[str] = set()
    suffixes: Mapping[str, tuple[str, ...]] = {
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("", "_count", "_sum"),
    }
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.update(name + s for s in suffixes.get(kind.strip(), ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names
