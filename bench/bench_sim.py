"""Simulator figures: how fast its API answers and its pusher pushes, beside bare aiohttp.

    python bench/bench_sim.py [--seconds 2] [--concurrency 32]

Each row runs for the same time at the same concurrency on loopback in this one run:
- API: ``/cgi-bin/message/custom/send`` through the simulator (token check, body checks,
  window, inbox) against a bare aiohttp handler that answers the same JSON (the ceiling);
- pusher: safe-mode XML text pushes (built, signed, encrypted; the reply read) against the
  same bare endpoint posted a pre-built body with plain aiohttp (the ceiling).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
from aiohttp import web

from services.simulator import Pusher, SimClock, SimConfig, SimState, create_app, running
from services.simulator.config import DEMO_AES_KEY, DEMO_OPENID
from services.simulator.load import percentiles


async def drive(
    call: Callable[[], Awaitable[None]], seconds: float, concurrency: int
) -> tuple[float, list[float]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    latencies: list[float] = []

    async def worker() -> None:
        while loop.time() < deadline:
            t0 = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - t0) * 1000)

    start = loop.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (loop.time() - start), latencies


def bare_app() -> web.Application:
    ok = msgspec.json.encode({"errcode": 0, "errmsg": "ok"})

    async def send(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ok, content_type="application/json")

    async def push(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/cgi-bin/message/custom/send", send)
    app.router.add_post("/wechat", push)
    return app


def row(name: str, rate: float, lat: list[float], base: float | None) -> str:
    p = percentiles(lat)
    assert p is not None
    ratio = f"{rate / base:6.2f}" if base else "  1.00"
    return f"{name:<34} {rate:9.0f} {p.p50:8.2f} {p.p99:8.2f}  {ratio}"


async def main(seconds: float, concurrency: int) -> None:
    config = SimConfig(window_message_count=10**9)
    state = SimState(config, clock=SimClock())
    state.user_message(DEMO_OPENID)
    token = state.token_for_tests()
    body = msgspec.json.encode(
        {
            "touser": DEMO_OPENID,
            "msgtype": "text",
            "text": {"content": "您好，请问有什么可以帮您？"},
        }
    )
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        running(bare_app()) as bare_url,
        running(create_app(state=state)) as sim_url,
        aiohttp.ClientSession(connector=connector) as session,
    ):

        def poster(url: str, data: bytes) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                async with session.post(url, data=data) as resp:
                    await resp.read()

            return call

        send_path = "/cgi-bin/message/custom/send?access_token=" + token
        base_rate, base_lat = await drive(poster(bare_url + send_path, body), seconds, concurrency)
        sim_rate, sim_lat = await drive(poster(sim_url + send_path, body), seconds, concurrency)
        pusher = Pusher(bare_url + "/wechat", aes_key=DEMO_AES_KEY, session=session, attempts=1)
        query, push_body = _one_push(pusher)
        raw_rate, raw_lat = await drive(
            poster(bare_url + "/wechat?" + query, push_body), seconds, concurrency
        )

        async def push() -> None:
            result = await pusher.text("您好")
            assert result.ok

        push_rate, push_lat = await drive(push, seconds, concurrency)

    print(f"concurrency {concurrency}, {seconds:g} s per row, loopback, one process")
    print(f"{'':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  ratio")
    print(row("bare aiohttp send (ceiling)", base_rate, base_lat, None))
    print(row("simulator send API", sim_rate, sim_lat, base_rate))
    print(row("bare aiohttp POST of a push", raw_rate, raw_lat, None))
    print(row("pusher: safe XML text push", push_rate, push_lat, raw_rate))


def _one_push(pusher: Pusher) -> tuple[str, bytes]:
    from urllib.parse import urlencode

    from libs.common.wechat import codec
    from libs.common.wechat.push import build_push

    msg = codec.TextMessage(
        to_user=pusher.gh_id,
        from_user=DEMO_OPENID,
        create_time=int(time.time()),
        content="您好",
        msg_id=2**60,
    )
    query, body = build_push(
        msg,
        token=pusher.token,
        cipher=pusher.cipher,
        mode="safe",
        fmt="xml",
        timestamp=msg.create_time,
        nonce="123456",
    )
    return urlencode(query), body


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency))
