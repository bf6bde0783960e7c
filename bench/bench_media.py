"""Download throughput and memory of the media service, beside a direct download from WeChat.

Run: .venv/bin/python bench/bench_media.py [--sizes-mb 16 64 256] [--rounds 5]

The simulated WeChat runs in this process and holds one temporary media per size; the media
service runs as its own process (``python -m services.media``) in front of it. For each size,
rounds alternate between a direct download from the simulator and the same download through
the service (``GET /v1/media/{id}``), so the machine's noise falls on both alike. The rates
are the median rounds; the ratio is the median over the rounds of the service's rate against
the direct round just before it (the machine's speed drifts within seconds, and a pair shares
its moment), with the lowest and highest pair beside it. The kernel's high-water mark of the
service's resident memory (VmHWM, reset before each download) gives the peak per size: it
shows whether memory grows with the file (it should not: the service passes chunks through).
The service's CPU per MB streamed (from the kernel's per-thread run time) is printed beside
the rates: it is the figure to compare across runs on a shared machine, where the rates
follow what the neighbours leave; the load average at the start and the end of the run says
how busy the machine was. The last columns say how busy each process was (its CPU time over
the wall time, median round): the benchmark's during a direct download, then the
benchmark's and the service's while the service relays; a relay whose two processes both
stay below 100% is losing its time in hand-offs between them, not in either one's CPU.

Targets (from the issue): through the service at least 80% of the direct throughput, and a
peak RSS that does not grow with the file size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from services.simulator.app import create_app as create_sim
from services.simulator.app import running
from services.simulator.config import DEMO_APPID, DEMO_SECRET, SimConfig
from services.simulator.state import SimState

MB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def rss_bytes(pid: int) -> int:
    return _status(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """Time the process's threads have run, to the nanosecond (``/proc/<pid>/task/*/schedstat``)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat:
                total += int(stat.read().split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return total / 1e9


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


class PeakRss:
    """The peak resident memory of a process over a block, by the kernel's own high-water
    mark (VmHWM), reset at the start through ``/proc/<pid>/clear_refs`` (Linux >= 4.0).
    Nothing samples in this process, so the measurement takes no time from the transfer."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0

    def __enter__(self) -> PeakRss:
        with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = _status(self.pid, "VmHWM")


async def download(session: aiohttp.ClientSession, url: str, size: int) -> float:
    """Seconds to read the whole body (discarding it), checking its length."""
    start = time.perf_counter()
    got = 0
    async with session.get(url) as resp:
        resp.raise_for_status()
        async for chunk in resp.content.iter_chunked(256 * 1024):
            got += len(chunk)
    elapsed = time.perf_counter() - start
    if got != size:
        raise RuntimeError(f"short body from {url}: {got} of {size} bytes")
    return elapsed


async def wait_ready(
    session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the media service exited with {proc.returncode}")
        try:
            async with session.get(url + "/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the media service did not answer /healthz within 30 s")


async def main(sizes_mb: list[int], rounds: int) -> None:
    biggest = max(sizes_mb) * MB
    state = SimState(SimConfig(media_max_bytes=biggest))
    async with running(create_sim(state=state)) as sim_url:
        port, internal = free_port(), free_port()
        env = {
            **os.environ,
            "WXKF_APPID": DEMO_APPID,
            "WXKF_APP_SECRET": DEMO_SECRET,
            "WXKF_WECHAT_API_BASE": sim_url,
            "WXKF_MEDIA_PORT": str(port),
            "WXKF_INTERNAL_PORT": str(internal),
            "WXKF_MEDIA_OPEN": "true",  # on loopback, for the benchmark's own calls
            "WXKF_LOG_LEVEL": "warning",
            "WXKF_LOG_FORMAT": "json",
        }
        # Started once, before any measurement: a blocking call here costs the loop nothing.
        service = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "services.media"], cwd=ROOT, env=env
        )
        media_url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
                await wait_ready(session, f"http://127.0.0.1:{internal}", service)
                await run(state, session, sim_url, media_url, service.pid, sizes_mb, rounds)
        finally:
            service.terminate()
            service.wait(timeout=30)


async def run(
    state: SimState,
    session: aiohttp.ClientSession,
    sim_url: str,
    media_url: str,
    pid: int,
    sizes_mb: list[int],
    rounds: int,
) -> None:
    token = state.token_for_tests()
    # Warm up both paths (connections, the service's access token) with a small media.
    small = state.media.put(b"\xff\xd8\xff" + os.urandom(MB), state.now())
    for _ in range(3):
        await download(session, f"{media_url}/v1/media/{small.media_id}", len(small.data))
    idle_rss = rss_bytes(pid)

    print(
        f"media service download, {rounds} rounds per size (median); service RSS idle "
        f"{idle_rss / MB:.1f} MB; {load_average()}"
    )
    print(
        f"{'size':>8} {'direct MB/s':>12} {'service MB/s':>13} {'ratio':>6} {'range':>10} "
        f"{'service CPU ms/MB':>18} {'peak RSS MB':>12} {'RSS growth MB':>14} "
        f"{'busy: direct':>12} {'relay (bench/service)':>21}"
    )
    ratios: list[float] = []
    growths: list[float] = []
    for size_mb in sizes_mb:
        size = size_mb * MB
        item = state.media.put(b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8), state.now())
        direct_url = f"{sim_url}/cgi-bin/media/get?access_token={token}&media_id={item.media_id}"
        via_url = f"{media_url}/v1/media/{item.media_id}"
        direct: list[float] = []
        via: list[float] = []
        peak = 0
        cpu = 0.0
        # How busy each process was (CPU time over wall time): the bench's alone, then the
        # bench's and the service's while the service relays.
        busy_direct: list[float] = []
        busy_via: list[tuple[float, float]] = []
        for _ in range(rounds):
            own = time.process_time()
            direct.append(size / MB / await download(session, direct_url, size))
            busy_direct.append((time.process_time() - own) * direct[-1] * MB / size)
            before, own = cpu_seconds(pid), time.process_time()
            with PeakRss(pid) as sampler:
                via.append(size / MB / await download(session, via_url, size))
            relayed = cpu_seconds(pid) - before
            wall = size / MB / via[-1]
            busy_via.append(((time.process_time() - own) / wall, relayed / wall))
            cpu += relayed
            peak = max(peak, sampler.peak)
        d, v = statistics.median(direct), statistics.median(via)
        paired = sorted(b / a for a, b in zip(direct, via, strict=True))
        ratio = statistics.median(paired)
        ratios.append(ratio)
        growths.append((peak - idle_rss) / MB)
        relay_busy = (
            f"{statistics.median(b for b, _ in busy_via):.0%}"
            f"/{statistics.median(v for _, v in busy_via):.0%}"
        )
        print(
            f"{size_mb:>6}MB {d:>12.0f} {v:>13.0f} {ratio:>6.0%} "
            f"{paired[0]:>5.0%}-{paired[-1]:<4.0%} "
            f"{1000 * cpu / (rounds * size_mb):>18.2f} {peak / MB:>12.1f} "
            f"{(peak - idle_rss) / MB:>14.1f} {statistics.median(busy_direct):>12.0%} "
            f"{relay_busy:>21}"
        )
        del state.media.items[item.media_id]

    worst = min(ratios)
    flat = max(growths) - min(growths) < 16
    verdict = "met" if worst >= 0.8 else "MISSED"
    print(f"throughput: worst ratio {worst:.0%} (target >= 80%): {verdict}")
    print(
        f"memory: RSS growth from {min(growths):.1f} to {max(growths):.1f} MB across "
        f"{sizes_mb[0]}-{sizes_mb[-1]} MB files (target: does not grow with size): "
        f"{'met' if flat else 'MISSED'}"
    )
    print(f"{load_average()} at the end")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(sorted(args.sizes_mb), args.rounds))
