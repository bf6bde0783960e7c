"""``rabbitmqctl`` for tests: a vhost of their own, queue depths and consumers, and closing
the connections of one vhost only (other people's tests share the broker)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
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
    exe, env = machine_cli("rabbitmqctl")
    problem = ""
    for attempt in range(attempts):
        try:
            done = run_cli([exe, "-q", *args], timeout_s=45, env=env)
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


SCRIPTS = Path("/usr/lib/rabbitmq/bin")
"""Where Debian keeps the CLI scripts its /usr/sbin wrappers call through ``su``."""
MACHINE_HOME = Path("/var/lib/rabbitmq")


def tool(name: str) -> str:
    direct = SCRIPTS / name
    if direct.exists():
        return str(direct)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed; run `make services` first")
    return found


def machine_cli(name: str) -> tuple[str, dict[str, str] | None]:
    """The CLI for the machine's broker, and its environment. As root on Debian: the script
    itself with the broker's cookie, not the wrapper, whose ``su`` starts a session of its own
    that a timeout could not end (see :func:`run_cli`)."""
    cookie = MACHINE_HOME / ".erlang.cookie"
    direct = SCRIPTS / name
    if os.geteuid() == 0 and direct.exists() and cookie.exists():
        return str(direct), {**os.environ, "HOME": str(MACHINE_HOME)}
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed; run `make services` first")
    return found, None


def run_cli(
    argv: list[str], *, timeout_s: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run an Erlang CLI in a session of its own, and end the whole session when it overruns:
    killing only the wrapper (``su`` on Debian) would leave its Erlang node behind, holding
    one of the few CLI node names that every later call needs."""
    proc = subprocess.Popen(  # noqa: S603 - a fixed executable with arguments we build
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


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
