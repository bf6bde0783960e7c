"""A Redis server of a test's own, on a free loopback port, to pause, kill and restart.

The machine's shared Redis is never touched. The server keeps nothing on disk, so a restart
is a Redis that lost all its data (what a pod without persistence does when it restarts).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


class RedisServer:
    def __init__(self, folder: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed; run `make services` first")
        self._exe = exe
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @classmethod
    @contextlib.contextmanager
    def started(cls, folder: Path) -> Iterator[RedisServer]:
        server = cls(folder)
        server.start()
        try:
            yield server
        finally:
            server.stop()

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5)

    def start(self) -> None:
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self._proc = subprocess.Popen(  # noqa: S603 - a fixed executable, our arguments
            [self._exe, "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        end = time.monotonic() + 20
        while True:
            try:
                if self.client().ping():
                    return
            except (redis.RedisError, OSError):
                if time.monotonic() > end:
                    raise
            time.sleep(0.02)  # polling the new server until it answers

    def pause(self) -> None:
        """SIGSTOP: the server holds every connection open and answers nothing."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            if self.paused:
                self.resume()
            self._proc.kill()
            self._proc.wait(timeout=10)

    def restart_empty(self) -> None:
        """Kill the server and start a new one on the same port: every key is gone."""
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()

    def keys(self) -> int:
        return int(self.client().dbsize())
