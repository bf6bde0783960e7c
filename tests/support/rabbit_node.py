"""RabbitMQ nodes of a test's own: one, or three in a cluster, each on its own ports and data.

The fault tests stop, restart, block and kill the broker; the machine's shared broker
(5672) must never feel that. Each :class:`RabbitNode` is a ``rabbitmq-server`` with a node
name, an AMQP port, a distribution port, a data folder and an Erlang cookie of its own, and
no plugins (it starts in a few seconds). ``rabbitmqctl`` reaches it by node name with the
same cookie.

    with RabbitNode.started(tmp) as node:          # one node
        url = node.url(node.add_vhost())
    with RabbitCluster.started(tmp) as cluster:    # three, clustered
        url = cluster.url(vhost)                   # names every node
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from tests.support.rabbit import run_cli
from tests.support.rabbit import tool as _tool

HOST = "127.0.0.1"
START_DEADLINE_S = 90.0
"""A node starts in about 6 s on an idle 2-core machine; several at once, or a busy machine,
take longer."""


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    socks = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind((HOST, 0))
            socks.append(sock)
            ports.add(sock.getsockname()[1])
    finally:
        for sock in socks:
            sock.close()
    return sorted(ports)


class RabbitNode:
    """One broker node of a test's own (see the module docstring)."""

    def __init__(self, folder: Path, *, name: str, cookie: str) -> None:
        self.folder = folder
        self.name = name
        self.node = f"{name}@localhost"
        self.port, self.dist_port = _free_ports(2)
        self.cookie = cookie
        folder.mkdir(parents=True, exist_ok=True)
        cookie_file = folder / ".erlang.cookie"
        cookie_file.write_text(cookie, encoding="ascii")
        cookie_file.chmod(0o400)
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {HOST}:{self.port}\n"
            "loopback_users = none\n"
            # Alarms are what the tests set, not what a busy CI disk happens to be.
            "disk_free_limit.absolute = 1MB\n"
            "vm_memory_high_watermark.relative = 0.6\n",
            encoding="utf-8",
        )
        (folder / "enabled_plugins").write_text("[].\n", encoding="utf-8")

    @classmethod
    @contextlib.contextmanager
    def started(cls, folder: Path, *, name: str | None = None) -> Iterator[RabbitNode]:
        node = cls(folder, name=name or f"wxkf-{uuid.uuid4().hex[:8]}", cookie=_cookie())
        node.start()
        try:
            yield node
        finally:
            node.destroy()

    # -- the process ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        return base | {
            "HOME": str(self.folder),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.folder / "pid"),
        }

    def start(self) -> None:
        """Start the node (its Erlang VM and the broker) and wait until it serves."""
        (self.folder / "pid").unlink(missing_ok=True)
        subprocess.run(  # noqa: S603 - a fixed executable with our arguments
            [_tool("rabbitmq-server"), "-detached"],
            env=self.env(),
            cwd=self.folder,
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.ctl("wait", str(self.folder / "pid"), "--timeout", str(int(START_DEADLINE_S)))

    def pid(self) -> int | None:
        try:
            return int((self.folder / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL the node's VM: no goodbye to clients or to the other nodes."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)

    def stop(self) -> None:
        """Stop the VM cleanly (``rabbitmqctl stop``)."""
        pid = self.pid()
        with contextlib.suppress(RuntimeError):
            self.ctl("stop", timeout_s=60)
        if pid is not None:
            _wait_gone(pid)

    def destroy(self) -> None:
        """Stop the node whatever its state and remove its data (its log stays, for a failed
        test's post-mortem)."""
        self.kill()
        for child in self.folder.iterdir() if self.folder.exists() else ():
            if child.name != "log":
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()

    # -- rabbitmqctl -----------------------------------------------------------------------------

    def ctl(self, *args: str, timeout_s: float = 60) -> str:
        done = run_cli(
            [_tool("rabbitmqctl"), "-q", "-n", self.node, *args],
            env=self.env(),
            timeout_s=timeout_s,
        )
        if done.returncode != 0:
            problem = done.stderr.strip() or done.stdout.strip()
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.node} failed: {problem}")
        return done.stdout

    def stop_app(self) -> None:
        """The broker stops (every client connection closes), the VM stays."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", str(int(START_DEADLINE_S)))

    def add_vhost(self, vhost: str | None = None) -> str:
        vhost = vhost or f"wxkf-fault-{uuid.uuid4().hex[:8]}"
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return vhost

    def url(self, vhost: str) -> str:
        return f"amqp://guest:guest@{HOST}:{self.port}/{quote(vhost, safe='')}"

    def memory_alarm(self, on: bool) -> None:
        """Raise the memory alarm (publishers are blocked) or clear it."""
        self.ctl("set_vm_memory_high_watermark", "0.000001" if on else "0.6")

    def disk_alarm(self, on: bool) -> None:
        """Raise the disk alarm (publishers are blocked) or clear it."""
        self.ctl("set_disk_free_limit", "100000GB" if on else "1MB")

    def alarms(self) -> str:
        return self.ctl("eval", "rabbit_alarm:get_alarms().").strip()

    def connection_states(self, vhost: str) -> dict[str, str]:
        """The connections of ``vhost`` by the name their client gave (with the client's
        port, to keep two of one name apart) → running, blocking, blocked, ..."""
        out = self.ctl(
            "list_connections", "--no-table-headers", "vhost", "peer_port", "state",
            "client_properties",
        )  # fmt: skip
        states: dict[str, str] = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) < 4 or parts[0] != vhost:
                continue
            found = re.search(r'"connection_name",\s*"([^"]*)"', parts[3])
            name = found.group(1) if found else "?"
            states[f"{parts[1]}:{name}"] = parts[2]
        return states

    def close_connections(self, vhost: str, name: str) -> int:
        """Close, from the broker's side, the connections of ``vhost`` whose client gave them
        the name ``name``; how many."""
        out = self.ctl(
            "list_connections", "--no-table-headers", "pid", "vhost", "client_properties"
        )
        closed = 0
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) < 3 or parts[1] != vhost:
                continue
            found = re.search(r'"connection_name",\s*"([^"]*)"', parts[2])
            if found and found.group(1) == name:
                self.ctl("close_connection", parts[0], "the test cuts it")
                closed += 1
        return closed

    def queues(self, vhost: str) -> dict[str, tuple[int, int]]:
        """Queue name → (messages ready + unacked, consumers)."""
        out = self.ctl(
            "list_queues", "-p", vhost, "--no-table-headers", "name", "messages", "consumers"
        )
        table: dict[str, tuple[int, int]] = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[1].isdigit():
                table[parts[0]] = (int(parts[1]), int(parts[2]))
        return table


class RabbitCluster:
    """Three :class:`RabbitNode` s clustered: quorum queues replicate on all three."""

    def __init__(self, folder: Path) -> None:
        cookie = _cookie()
        tag = uuid.uuid4().hex[:6]
        self.nodes = [
            RabbitNode(folder / f"n{i}", name=f"wxkf-{tag}-{i}", cookie=cookie) for i in (1, 2, 3)
        ]

    @classmethod
    @contextlib.contextmanager
    def started(cls, folder: Path) -> Iterator[RabbitCluster]:
        cluster = cls(folder)
        try:
            cluster.start()
            yield cluster
        finally:
            for node in cluster.nodes:
                node.destroy()

    def start(self) -> None:
        # The VMs boot in parallel (most of a node's start), then join the first one by one.
        launches = [
            subprocess.Popen(  # noqa: S603 - a fixed executable with our arguments
                [_tool("rabbitmq-server"), "-detached"],
                env=node.env(),
                cwd=node.folder,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for node in self.nodes
        ]
        for launch in launches:
            launch.wait(timeout=60)
        for node in self.nodes:
            node.ctl("wait", str(node.folder / "pid"), "--timeout", str(int(START_DEADLINE_S)))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node)
            node.start_app()

    def add_vhost(self) -> str:
        return self.nodes[0].add_vhost()

    def url(self, vhost: str) -> str:
        """One URL naming every node, as a deployment names a cluster."""
        hosts = ",".join(f"{HOST}:{node.port}" for node in self.nodes)
        return f"amqp://guest:guest@{hosts}/{quote(vhost, safe='')}"

    def node_named(self, node: str) -> RabbitNode:
        return next(n for n in self.nodes if n.node == node)

    def describe(self, vhost: str) -> str:
        """Every queue's depth, leader and members online, for a failed test's message."""
        live = [n for n in self.nodes if _alive(n.pid())]
        return live[0].ctl(
            "list_queues", "-p", vhost, "name", "messages", "leader", "online", "state"
        )

    def leaders(self, vhost: str) -> dict[str, str]:
        """Quorum queue name → the node that leads it (asked of the first node alive)."""
        live = [n for n in self.nodes if n.pid() is not None and _alive(n.pid())]
        out = live[0].ctl("list_queues", "-p", vhost, "--no-table-headers", "name", "leader")
        table = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and "@" in parts[1]:
                table[parts[0]] = parts[1]
        return table


def _cookie() -> str:
    return secrets.token_hex(16).upper()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)  # polling the process table until the VM is gone
    raise AssertionError(f"process {pid} still runs {deadline_s}s after it was stopped")
