"""A Redis primary, its replica and a sentinel of their own, on free loopback ports.

The machine's shared Redis is never touched: each group is three ``redis-server`` processes
in a temporary folder, password-protected like a deployment. The sentinel does not fail
the group over on its own (its failure detection waits a minute, so a stalled CI machine
cannot trigger one); tests fail it over with SENTINEL FAILOVER when they mean to.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

HOST = "127.0.0.1"
MASTER = "wxkf-test"
PASSWORD = "s3cret:with@odd/chars"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _wait(check: object, what: str, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < end:
        try:
            last = check() if callable(check) else check
            if last:
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {deadline_s}s; last seen: {last!r}")


class SentinelGroup:
    """Start with ``with SentinelGroup(tmp_path) as group:``; all three stop on exit.

    ``promotable=False`` does not wait for the sentinel to vet the replica (seconds): enough
    for tests that never fail the group over.
    """

    def __init__(
        self, folder: Path, *, down_after_ms: int = 60_000, promotable: bool = True
    ) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed; run `make services` first")
        self._exe = exe
        self._folder = folder
        self._down_after_ms = down_after_ms
        self._promotable = promotable
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        ports: set[int] = set()
        while len(ports) < 3:  # a port freed by one call can be handed out by the next
            ports.add(_free_port())
        self.ports = sorted(ports)[:2]
        self.sentinel_port = sorted(ports)[2]

    # -- lifetime --------------------------------------------------------------------------------

    def __enter__(self) -> SentinelGroup:
        try:
            first, second = self.ports
            self._server(first)
            self._server(second, "--replicaof", HOST, str(first))
            _wait(
                lambda: self._node(second).info("replication")["master_link_status"] == "up",
                "the replica's link to the primary",
            )
            conf = self._folder / "sentinel.conf"
            conf.write_text(
                f"port {self.sentinel_port}\nbind {HOST}\ndir {self._folder}\n"
                f"sentinel monitor {MASTER} {HOST} {first} 1\n"
                f'sentinel auth-pass {MASTER} "{PASSWORD}"\n'
                f"sentinel down-after-milliseconds {MASTER} {self._down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} 3000\n",
                encoding="utf-8",
            )
            self._start(self.sentinel_port, str(conf), "--sentinel")
            if self._promotable:
                _wait(self.replica_promotable, "the sentinel seeing a replica it could promote")
            else:
                _wait(self.primary_port, "the sentinel naming the primary")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs.values():
            proc.wait(timeout=10)

    def _server(self, port: int, *extra: str) -> None:
        self._start(
            port,
            "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(self._folder), "--requirepass", PASSWORD, "--masterauth", PASSWORD,
            # Redis waits 5 s by default before a full sync, to batch replicas.
            "--repl-diskless-sync-delay", "0",
            *extra,
        )  # fmt: skip
        _wait(lambda: self._node(port).ping(), f"redis-server on port {port}")

    def _start(self, port: int, *args: str) -> None:
        log = open(self._folder / f"redis-{port}.log", "wb")  # noqa: SIM115 - the child keeps it
        self._procs[port] = subprocess.Popen(  # noqa: S603 - a fixed executable, our arguments
            [self._exe, *args], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    # -- what a test asks --------------------------------------------------------------------------

    def url(self, *, db: int = 0, password: str | None = PASSWORD) -> str:
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis+sentinel://{auth}{HOST}:{self.sentinel_port}/{MASTER}/{db}"

    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(host=HOST, port=port, password=PASSWORD, socket_timeout=2)

    def _sentinel(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.sentinel_port, socket_timeout=2)

    def primary_port(self) -> int:
        """The port the sentinel currently names as the primary."""
        _host, port = self._sentinel().sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def replica_promotable(self) -> bool:
        """The sentinel has talked to the replica and seen its link to the primary up (it
        promotes no replica before that: NOGOODSLAVE)."""
        for replica in self._sentinel().sentinel_slaves(MASTER):
            flags = replica["flags"]
            flags = flags if isinstance(flags, set) else set(str(flags).split(","))
            if flags == {"slave"} and replica.get("master-link-status") == "ok":
                return replica.get("info-refresh", 10**9) < 5000
        return False

    def node(self, port: int) -> redis.Redis:
        """A plain client of one server, to look under the store."""
        return self._node(port)

    def sync_replica(self) -> None:
        """Wait until the replica has every write the primary took (before a failover)."""
        acked = self._node(self.primary_port()).execute_command("WAIT", 1, 5000)
        assert acked == 1, "the replica did not acknowledge the primary's writes"

    def failover(self) -> int:
        """Ask the sentinel to promote the replica; the new primary's port once it serves and
        the old one has been turned into its replica.

        Until that turn the old primary still takes writes (replication is asynchronous):
        whatever lands there is lost, which is Sentinel's documented failover window, not
        something a client can close.
        """
        before = self.primary_port()
        self._sentinel().execute_command("SENTINEL", "FAILOVER", MASTER)
        after = self._await_new_primary(before)
        if self._procs[before].poll() is not None:
            return after  # the old primary is dead: nothing to turn around
        # The sentinel turns the old primary around on its next look at it (up to 10 s);
        # doing its step now keeps the test short and changes nothing it checks.
        old = self._node(before)
        if old.info("replication")["role"] == "master":
            old.execute_command("REPLICAOF", HOST, after)
        _wait(
            lambda: old.info("replication")["role"] == "slave",
            "the old primary turned into a replica",
        )
        return after

    def replica_port(self) -> int:
        primary = self.primary_port()
        return next(port for port in self.ports if port != primary)

    def pause(self, port: int) -> None:
        """SIGSTOP one server: it holds its connections and answers nothing (a replica so
        stopped falls behind its primary)."""
        self._procs[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self._procs[port].send_signal(signal.SIGCONT)

    def kill_primary(self) -> int:
        """Kill the primary outright (no goodbye to anyone); its port. The sentinel names it
        until :meth:`failover`."""
        before = self.primary_port()
        self._procs[before].kill()
        self._procs[before].wait(timeout=10)
        return before

    def _await_new_primary(self, before: int) -> int:
        _wait(lambda: self.primary_port() != before, "the sentinel naming a new primary")
        after = self.primary_port()
        _wait(
            lambda: self._node(after).info("replication")["role"] == "master",
            "the new primary taking writes",
        )
        return after
