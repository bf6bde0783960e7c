"""Ingress: pushes/s and answer latency, beside the HTTP layer's ceiling and a naive pipeline.

    python bench/bench_ingress.py [--duration 10] [--concurrency 32] [--rate 1000]

Needs RabbitMQ and Redis on loopback (``make services``) and, for the naive pipeline, the
``bench`` extra (wechatpy). Every server runs as its own process and gets the same load, in
one run on this machine:

* ``bare``    an aiohttp handler that reads the body and answers ``success``: the ceiling of
              the HTTP layer under this load generator;
* ``naive``   the pipeline people write today: wechatpy decrypts and parses, aio-pika
              publishes with a confirm (one channel with publisher confirms), then ``success``;
* ``ingress`` ``python -m services.ingress`` as deployed (amqp bus, redis store, log level
              info to a file), with a process answering the decision RPC of every message.

The load is safe-mode XML text pushes built exactly as WeChat builds them (the codec's
``build_push``), each with its own MsgId, sent over keep-alive connections by a small raw
HTTP/1.1 client (so that the generator's own cost stays well below the servers'). Phase 1 is
closed-loop at ``--concurrency``; phase 2 (ingress only) is open-loop at ``--rate`` pushes/s,
latency counted from each push's scheduled time. The peak RSS of the ingress process is read
from /proc at the end. Targets: ingress >= 1.5x the naive rate; p99 < 25 ms at the fixed rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

SCRIPT = str(Path(__file__).resolve())
ROOT = Path(SCRIPT).parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx2c2769f8efd9abc2"
GH_ID = "gh_10f6c3c3ac5a"
PATH = "/wechat"
HOST = "127.0.0.1"
REDIS_URL = "redis://127.0.0.1:6379/0"


# --- the servers other than ingress (run as child processes of this script) ---------------------


def run_bare(port: int) -> None:
    """Reads the body and answers ``success``: the HTTP layer and nothing else."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post(PATH, handle)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


def run_naive(port: int, amqp_url: str) -> None:
    import aio_pika
    from aiohttp import web
    from wechatpy import parse_message
    from wechatpy.crypto import WeChatCrypto

    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    exchange_key = web.AppKey("exchange", aio_pika.abc.AbstractExchange)

    async def broker(app: web.Application) -> AsyncIterator[None]:
        connection = await aio_pika.connect_robust(amqp_url)
        channel = await connection.channel()  # publisher confirms are on by default
        app[exchange_key] = await channel.get_exchange("kf.events")
        yield
        await connection.close()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        q = request.query
        xml = crypto.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"])
        msg = parse_message(xml)
        event = {
            "type": f"msg.{msg.type}",
            "msg_id": msg.id,
            "openid": msg.source,
            "to_user": msg.target,
            "create_time": int(msg.create_time.timestamp()),
            "content": getattr(msg, "content", ""),
        }
        await request.app[exchange_key].publish(
            aio_pika.Message(
                json.dumps(event, ensure_ascii=False).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(msg.id),
            ),
            routing_key=f"msg.{msg.type}",
        )
        return web.Response(text="success")

    app = web.Application()
    app.cleanup_ctx.append(broker)
    app.router.add_post(PATH, handle)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


def run_responder(amqp_url: str) -> None:
    """Answers the decision RPC of every user message (never transfers), first thing."""
    from libs.common.bus import Delivery, connect
    from libs.common.observability.logging import configure
    from libs.common.schemas import AnyMessage, DecisionReply
    from libs.common.topology import ROUTER_EVENTS

    configure("bench-responder", fmt="json", level="warning")  # on stderr: stdout says "ready"

    async def main() -> None:
        bus = await connect(amqp_url)

        async def decide(msg: AnyMessage, delivery: Delivery) -> None:
            await delivery.reply(DecisionReply(event_id=msg.id, transfer=False, rule="bench"))

        await bus.consume(ROUTER_EVENTS, decide, prefetch=128)
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await bus.close()

    from libs.common.runner import run

    run(main())  # on the services' loop (uvloop where it builds)


# --- the load --------------------------------------------------------------------------------


def build_requests(count: int, port: int, ids: list[range]) -> list[bytes]:
    """Safe-mode XML text pushes as WeChat sends them, as raw HTTP/1.1 requests.

    Their MsgIds are added to ``ids``, so that the run can remove its dedupe keys after.
    """
    from libs.common.wechat import codec
    from libs.common.wechat.crypto import Cipher
    from libs.common.wechat.push import build_push

    cipher = Cipher.from_key(AES_KEY, APPID)
    now = int(time.time())
    base = 2**60 + uuid.uuid4().int % 2**59
    ids.append(range(base, base + count))
    out = []
    for i in range(count):
        msg = codec.TextMessage(
            to_user=GH_ID,
            from_user=f"oBench{i % 500:022d}",
            create_time=now,
            content=f"我想问一下订单 {i} 的物流",
            msg_id=base + i,
        )
        query, body = build_push(
            msg, token=TOKEN, cipher=cipher, mode="safe", fmt="xml", timestamp=now, nonce=str(i)
        )
        head = (
            f"POST {PATH}?{urlencode(query)} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


class Conn:
    """One keep-alive HTTP/1.1 connection: a request out, its answer back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


GENERATOR = "generator"
"""This process, the load generator: its CPU is shown beside the servers', never in their sum."""

ANSWER_LOST = (OSError, asyncio.IncompleteReadError, ValueError, IndexError)
"""No connection (refused, timed out: a full accept queue), a reset or closed one, or no status
line: an error of that push, not of the run."""


@dataclass
class Result:
    name: str
    sent: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies_ms)
        if not xs:
            return math.nan
        return xs[max(0, min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1))]


async def closed_loop(
    name: str, port: int, requests: Iterator[bytes], *, concurrency: int, duration_s: float
) -> Result:
    result = Result(name)
    conns = [await Conn.open(port) for _ in range(concurrency)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + duration_s

    async def worker(i: int) -> None:
        for raw in requests:
            conn = conns[i]
            if loop.time() >= deadline:
                return
            t0 = time.perf_counter()
            try:
                status, body = await conn.send(raw)
            except ANSWER_LOST:
                result.sent += 1
                result.errors += 1
                conn.close()
                try:
                    conns[i] = await Conn.open(port)
                except OSError:
                    return  # this worker's connection is gone; the others go on
                continue
            result.sent += 1
            if status == 200 and body == b"success":
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            else:
                result.errors += 1

    await asyncio.gather(*(worker(i) for i in range(len(conns))))
    result.elapsed_s = loop.time() - started
    for c in conns:
        c.close()
    return result


async def open_loop(
    name: str, port: int, requests: list[bytes], *, rate: float, duration_s: float
) -> Result:
    result = Result(name)
    idle = [await Conn.open(port) for _ in range(64)]
    # The clock of every latency: uvloop's loop.time() only counts whole milliseconds.
    clock = time.perf_counter
    started = clock()
    count = min(len(requests), int(rate * duration_s))
    tasks = []

    async def one(raw: bytes, due: float) -> None:
        conn = None
        try:
            conn = idle.pop() if idle else await Conn.open(port)
            status, body = await conn.send(raw)
        except ANSWER_LOST:
            result.sent += 1
            result.errors += 1
            if conn is not None:
                conn.close()
            return
        done = clock()
        idle.append(conn)
        result.sent += 1
        if status == 200 and body == b"success":
            result.latencies_ms.append((done - due) * 1000)
        else:
            result.errors += 1

    for i in range(count):
        due = started + i / rate
        if (delay := due - clock()) > 0:
            await asyncio.sleep(delay)  # pacing the open loop
        tasks.append(asyncio.create_task(one(requests[i], due)))
    await asyncio.gather(*tasks)
    result.elapsed_s = clock() - started
    for c in idle:
        c.close()
    return result


# --- processes and the broker ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise SystemExit("rabbitmqctl not found: run `make services` first")
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=120)  # noqa: S603 - fixed executable, our arguments


@contextlib.contextmanager
def vhost() -> Iterator[str]:
    name = f"wxkf-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@{HOST}:5672/{quote(name, safe='')}"
    finally:
        rabbitmqctl("delete_vhost", name)


@contextlib.contextmanager
def child(
    args: list[str], *, log: Path, env: dict[str, str] | None = None, pipe: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process of ours (stdout piped when ``pipe``), stopped with SIGTERM at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, *args],
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=subprocess.PIPE if pipe else out,
            stderr=out,
            cwd=ROOT,
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not listen on {port} within 30 s") from None
            await asyncio.sleep(0.1)  # polling a child process's start


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(peak, current) resident set size of ``pid`` in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


async def declare(amqp_url: str) -> None:
    from libs.common.bus import connect

    bus = await connect(amqp_url)
    await bus.declare()
    await bus.close()


async def forget_keys(ids: list[range]) -> None:
    """Remove the dedupe keys this run left in the shared Redis (and only those)."""
    import redis.asyncio as aioredis

    from libs.common.schemas import derived_id
    from services.ingress.dedupe import key_for

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for msg_ids in ids:
            keys = [f"wxkf:{key_for(derived_id('push', 'msg', APPID, str(i)))}" for i in msg_ids]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


# --- the run ---------------------------------------------------------------------------------


def line(r: Result) -> str:
    return (
        f"  {r.name:<28} {r.rate:9.0f}/s   p50 {r.pct(50):7.2f} ms   p99 {r.pct(99):7.2f} ms"
        f"   ok {len(r.latencies_ms):6d}   errors {r.errors}"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_pid(pattern: str) -> int | None:
    """The oldest process whose command line contains ``pattern`` (read only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if pattern in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
    return min(found) if found else None


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    fresh: bool
    """True when every push must be new (ingress remembers the ones it has seen)."""
    helpers: dict[str, int] = field(default_factory=dict)
    """Other processes whose CPU counts toward this server's pushes."""
    results: list[Result] = field(default_factory=list)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid


async def measure(server: Server, requests: Iterator[bytes], args: argparse.Namespace) -> None:
    watched = {server.name: server.pid, **server.helpers, GENERATOR: os.getpid()}
    before = {k: cpu_seconds(p) for k, p in watched.items()}
    result = await closed_loop(
        server.name, server.port, requests, concurrency=args.concurrency, duration_s=args.duration
    )
    done = max(len(result.latencies_ms), 1)
    for k, p in watched.items():
        server.cpu_us.setdefault(k, []).append((cpu_seconds(p) - before[k]) / done * 1e6)
    server.results.append(result)


def cpu_medians(server: Server) -> dict[str, float]:
    return {k: sorted(v)[len(v) // 2] for k, v in server.cpu_us.items()}


def median_result(server: Server) -> Result:
    ranked = sorted(server.results, key=lambda r: r.rate)
    return ranked[len(ranked) // 2]


async def run(args: argparse.Namespace) -> int:
    logdir = Path(tempfile.mkdtemp(prefix="wxkf-bench-ingress-"))
    ids: list[range] = []
    shared = {
        name: pid
        for name, pattern in (("rabbitmq", "-s rabbit boot"), ("redis", "redis-server"))
        if (pid := find_pid(pattern)) is not None
    }
    with contextlib.ExitStack() as stack:
        servers: list[Server] = []
        port = free_port()
        proc = stack.enter_context(
            child([SCRIPT, "--role", "bare", "--port", str(port)], log=logdir / "bare.log")
        )
        servers.append(Server("bare", port, proc, fresh=False))

        # The naive pipeline publishes to the same topology, in a vhost of its own so that its
        # messages (not of our schema) never reach the decision responder of ingress.
        naive_url = stack.enter_context(vhost())
        await declare(naive_url)
        port = free_port()
        role = [SCRIPT, "--role", "naive", "--port", str(port), "--amqp", naive_url]
        proc = stack.enter_context(child(role, log=logdir / "naive.log"))
        servers.append(Server("naive", port, proc, fresh=False, helpers=dict(shared)))

        ingress_url = stack.enter_context(vhost())
        await declare(ingress_url)
        responder = [SCRIPT, "--role", "responder", "--amqp", ingress_url]
        resp = stack.enter_context(child(responder, log=logdir / "responder.log", pipe=True))
        assert resp.stdout is not None
        if await asyncio.to_thread(resp.stdout.readline) != b"ready\n":
            raise SystemExit("the decision responder did not start")
        port = free_port()
        env = {
            "WXKF_APPID": APPID,
            "WXKF_TOKEN": TOKEN,
            "WXKF_AES_KEY": AES_KEY,
            "WXKF_BUS_URL": ingress_url,
            "WXKF_STORE_URL": REDIS_URL,
            "WXKF_INGRESS_PORT": str(port),
            "WXKF_LOG_FORMAT": "json",
            "WXKF_LOG_LEVEL": args.log_level,
        }
        proc = stack.enter_context(
            child(["-m", "services.ingress"], env=env, log=logdir / "ingress.log")
        )
        ingress = Server(
            "ingress", port, proc, fresh=True, helpers={"responder": resp.pid, **shared}
        )
        servers.append(ingress)

        pools: dict[str, list[bytes]] = {}
        for server in servers:
            await wait_listening(server.port, server.proc, server.name)
            pools[server.name] = build_requests(20_000, server.port, ids)
            warm = iter(pools[server.name][:500])
            await closed_loop("warm-up", server.port, warm, concurrency=8, duration_s=30)
        # Rounds interleave the servers, so that a noisy neighbour on this shared machine
        # does not fall on one of them only; each server's median round is reported.
        for _ in range(args.rounds):
            for server in servers:
                if server.fresh:
                    requests: Iterator[bytes] = iter(
                        build_requests(int(args.duration * 8000), server.port, ids)
                    )
                else:
                    requests = itertools.cycle(pools[server.name])
                await measure(server, requests, args)

        steady_peak, _ = peak_rss_mb(ingress.pid)
        # Below saturation first (latency when nothing queues), then the fixed target rate.
        below = max(50.0, round(median_result(ingress).rate / 2, -1))
        half = build_requests(int(below * args.rate_duration) + 10, ingress.port, ids)
        half_rate = await open_loop(
            f"ingress at {below:.0f}/s",
            ingress.port,
            half,
            rate=below,
            duration_s=args.rate_duration,
        )
        fixed = build_requests(int(args.rate * args.rate_duration) + 10, ingress.port, ids)
        watched = {"ingress": ingress.pid, **ingress.helpers, GENERATOR: os.getpid()}
        before = {k: cpu_seconds(p) for k, p in watched.items()}
        fixed_rate = await open_loop(
            f"ingress at {args.rate:.0f}/s",
            ingress.port,
            fixed,
            rate=args.rate,
            duration_s=args.rate_duration,
        )
        fixed_cpu = {k: cpu_seconds(p) - before[k] for k, p in watched.items()}
        peak, current = peak_rss_mb(ingress.pid)
    await forget_keys(ids)

    bare, naive, ing = (median_result(s) for s in servers)
    print(
        f"safe-mode XML text pushes, concurrency {args.concurrency}, {args.duration:g} s per "
        f"round, median of {args.rounds} interleaved rounds"
    )
    for server, r in zip(servers, (bare, naive, ing), strict=True):
        rates = ", ".join(f"{x.rate:.0f}" for x in server.results)
        print(line(r) + f"   (rounds: {rates}/s)")
    print(f"open loop, {args.rate_duration:g} s, latency from each push's scheduled time:")
    print(line(half_rate) + "   (half the closed-loop rate)")
    print(line(fixed_rate))
    print("CPU per push (median of rounds), by process, and all of them together:")
    totals: dict[str, float] = {}
    for server in servers[1:]:
        medians = cpu_medians(server)
        parts = ", ".join(f"{k} {us:.0f} us" for k, us in medians.items() if k != GENERATOR)
        total = totals[server.name] = sum(us for k, us in medians.items() if k != GENERATOR)
        # What the machine's cores could carry if the servers had them all (no load generator,
        # no neighbours): the ceiling that CPU alone puts on the rate.
        ceiling = (os.cpu_count() or 1) * 1e6 / total if total else math.nan
        print(
            f"  {server.name:<8} {parts}   (together {total:.0f} us: {ceiling:.0f}/s at most;"
            f" the load generator {medians[GENERATOR]:.0f} us besides)"
        )
    cores = os.cpu_count() or 1
    answered = max(len(fixed_rate.latencies_ms), 1)
    busy = sum(fixed_cpu.values()) / fixed_rate.elapsed_s if fixed_rate.elapsed_s else math.nan
    print(
        f"  at {args.rate:.0f}/s: "
        + ", ".join(f"{k} {s / answered * 1e6:.0f} us" for k, s in fixed_cpu.items())
        + f"   ({busy:.2f} of {cores} cores busy, the generator included)"
    )
    # The parts that are not ingress, at the cost they had in its rounds: even an ingress that
    # cost nothing leaves them, so they bound the ratio that CPU allows against the naive one.
    floor = sum(us for k, us in cpu_medians(ingress).items() if k not in (GENERATOR, "ingress"))
    print(
        f"CPU floor without ingress (responder, RabbitMQ, Redis): {floor:.0f} us per push,"
        f" against {totals['naive']:.0f} us for all of the naive pipeline: at best"
        f" {totals['naive'] / floor:.2f}x its rate on CPU alone, with an ingress costing nothing"
        f" (1.5x needs {totals['naive'] / 1.5:.0f} us in all)"
    )
    print(f"ingress / naive rate:  {ing.rate / naive.rate:.2f}x   (target >= 1.5x)")
    print(f"ingress / bare rate:   {ing.rate / bare.rate:.2f}x   (the HTTP layer's ceiling)")
    print(f"p99 at {args.rate:.0f}/s: {fixed_rate.pct(99):.2f} ms   (target < 25 ms)")
    print(
        f"ingress RSS: peak {steady_peak:.1f} MiB through the closed-loop rounds, "
        f"{peak:.1f} MiB after the open loops, {current:.1f} MiB at the end"
    )
    print(f"logs in {logdir}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=6.0, help="closed-loop seconds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop pushes/s")
    parser.add_argument("--rate-duration", type=float, default=15.0)
    parser.add_argument("--log-level", default="info", help="the ingress process's level")
    parser.add_argument("--role", choices=("bare", "naive", "responder"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--amqp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "bare":
        run_bare(args.port)
        return 0
    if args.role == "naive":
        run_naive(args.port, args.amqp)
        return 0
    if args.role == "responder":
        run_responder(args.amqp)
        return 0
    from libs.common import runner

    # The load generator runs on the services' loop too: uvloop spends about a third less per
    # push than asyncio's (65-84 against 99-121 us against the bare handler), CPU the servers
    # under test then have.
    return runner.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
