"""``rabbitmqctl`` for tests: a vhost of their own, queue depths and consumers, and closing
the connections of one vhost only (other people's tests share the broker)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid
from urllib.parse import quote

HOST = "127.0.0.1"
PORT = int(os.environ.get("WXKF_TEST_AMQP_PORT", "5672"))
"""The port ``make services`` checks too; ``rabbitmqctl`` finds another node by the
``RABBITMQ_NODENAME`` it is given."""


def rabbitmqctl(*args: str, attempts: int = 12) -> str:
    """Run one ``rabbitmqctl`` command; retried while the CLI cannot start its node.

    Each CLI run is a small Erlang node on one of a few distribution ports; when several test
    runs call it at once the ports run out ("Distribution failed"), which passes in a moment.
    """
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise RuntimeError("rabbitmqctl is not installed; run `make services` first")
    problem = ""
    for attempt in range(attempts):
        try:
            done = subprocess.run(  # noqa: S603 - a fixed executable with arguments we build
                [exe, "-q", *args], capture_output=True, text=True, timeout=45, check=False
            )
        except subprocess.TimeoutExpired:
            problem = "timed out"
        else:
            if done.returncode == 0:
                return done.stdout
            problem = done.stderr.strip() or done.stdout.strip()
            if "Distribution failed" not in problem and "nodistribution" not in problem:
                break
        # A pause between tries of a shared CLI, not a wait for a test condition.
        time.sleep(0.3 + random.random() * min(2.0, 0.3 * 2**attempt))
    raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {problem}")


def add_vhost(prefix: str = "wxkf-test") -> str:
    vhost = f"{prefix}-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost


def delete_vhost(vhost: str) -> None:
    rabbitmqctl("delete_vhost", vhost)


def url(vhost: str, port: int = PORT) -> str:
    return f"amqp://guest:guest@{HOST}:{port}/{quote(vhost, safe='')}"


def queues(vhost: str) -> dict[str, tuple[int, int]]:
    """Queue name → (messages ready + unacked, consumers)."""
    out = rabbitmqctl(
        "list_queues", "-p", vhost, "--no-table-headers", "name", "messages", "consumers"
    )
    table: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1].isdigit():
            table[parts[0]] = (int(parts[1]), int(parts[2]))
    return table


def close_connections(vhost: str, reason: str = "test closes it") -> int:
    """Close, from the server side, every client connection of ``vhost``; how many."""
    out = rabbitmqctl("list_connections", "--no-table-headers", "pid", "vhost")
    closed = 0
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1] == vhost:
            rabbitmqctl("close_connection", parts[0], reason)
            closed += 1
    return closed
