"""No secret and no openid in clear, in any log line or any ``/metrics`` body.

Every service runs as its own process with secrets of this test (WeChat's Token and AES key,
the AppSecret, the internal token, the log key, a broker user and a Redis user each, behind
TCP proxies), and a conversation takes every error path: a push with a bad signature, WeChat
refusing sends (invalid token, quota, a 500), the media API without its token, the broker
down and Redis down. Then every line the processes wrote (at debug) and every exposition is
searched for each secret, each access token the simulated WeChat issued, and each openid.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import string
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from libs.common.access import SERVICES, user_name
from libs.common.topology import ALL_QUEUES
from services.shipped_images import write_assets
from services.simulator.app import create_app as create_sim
from services.simulator.app import running as running_sim
from services.simulator.clock import SimClock
from services.simulator.config import SimConfig
from services.simulator.faults import Fault, FaultRule
from services.simulator.pusher import Pusher
from services.simulator.state import SimState
from services.up.users import provision
from tests.e2e.deployments import Child, environment, ready, spawn
from tests.support import rabbit
from tests.support.redis_db import redis_database
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

DEADLINE_S = 60.0


def _secret(n: int = 24) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


class Known:
    """The secrets of this run: every one a value nothing else would print by chance."""

    def __init__(self) -> None:
        tag = secrets.token_hex(8)
        self.appid = f"wx{tag}"
        self.gh_id = f"gh_{tag[:12]}"
        self.token = "tok" + _secret()
        self.aes_key = _secret(43)
        self.app_secret = "sec" + _secret(29)
        self.internal_token = "int" + _secret()
        self.log_key = "log" + _secret()
        self.passwords: list[str] = []

    def values(self) -> dict[str, str]:
        found = {
            "token": self.token,
            "aes_key": self.aes_key,
            "app_secret": self.app_secret,
            "internal_token": self.internal_token,
            "log_key": self.log_key,
        }
        found |= {f"password {n}": p for n, p in enumerate(self.passwords)}
        return found


def through(url: str, port: int, proxy: TcpProxy) -> str:
    return url.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{proxy.port}/", 1)


@dataclass
class Run:
    children: dict[str, Child]
    sim: SimState
    push_url: str = ""
    media_url: str = ""
    proxies: list[TcpProxy] = field(default_factory=list)
    """The broker's, then Redis's: every service reaches them through these."""


@contextlib.asynccontextmanager
async def system(known: Known, tmp: Path) -> AsyncIterator[Run]:
    vhost = await asyncio.to_thread(rabbit.add_vhost, "wxkf-secrets")
    suffix = f"-{uuid.uuid4().hex[:6]}"
    sim = SimState(
        SimConfig(appid=known.appid, secret=known.app_secret, gh_id=known.gh_id), clock=SimClock()
    )
    children: dict[str, Child] = {}
    try:
        async with (
            redis_database() as store_url,
            running_sim(create_sim(state=sim)) as sim_url,
        ):
            urls = await provision(rabbit.url(vhost), store_url, ALL_QUEUES, suffix=suffix)
            known.passwords = [u.bus_url.split(":")[2].split("@")[0] for u in urls.values()]
            bus_proxy = await TcpProxy("127.0.0.1", rabbit.PORT).start()
            store_proxy = await TcpProxy("127.0.0.1", 6379).start()
            write_assets(tmp / "assets")
            env = environment(
                {
                    "appid": known.appid,
                    "token": known.token,
                    "aes_key": known.aes_key,
                    "push_mode": "safe",
                    "app_secret": known.app_secret,
                    "internal_token": known.internal_token,
                    "log_key": known.log_key,
                    "wechat_api_base": sim_url,
                    "assets_dir": str(tmp / "assets"),
                    "log_format": "json",
                    "log_level": "debug",
                    "ingress_port": "0",
                    "media_port": "0",
                    "internal_port": "0",
                    "shutdown_grace_s": "3",
                    "bus_declare": "own",
                    "retry_base_s": "0.2",
                }
            )
            for name in ("media", "ingress", "router", "sender"):
                own = urls[name]  # type: ignore[index]  # the four names of access.SERVICES
                children[name] = await spawn(
                    name,
                    env
                    | {
                        "WXKF_BUS_URL": through(own.bus_url, rabbit.PORT, bus_proxy),
                        "WXKF_STORE_URL": through(own.store_url, 6379, store_proxy),
                    },
                )
                port = await children[name].bound()
                if name == "media":
                    env["WXKF_MEDIA_URL"] = f"http://127.0.0.1:{port}"
            for child in children.values():
                await ready(await child.internal_url("/readyz"))
            try:
                yield Run(
                    children=children,
                    sim=sim,
                    push_url=f"http://127.0.0.1:{children['ingress'].port}/wechat",
                    media_url=f"http://127.0.0.1:{children['media'].port}",
                    proxies=[bus_proxy, store_proxy],
                )
            finally:
                await asyncio.gather(*(child.stop() for child in children.values()))
                await bus_proxy.close()
                await store_proxy.close()
                for service in SERVICES:
                    await asyncio.to_thread(
                        rabbit.rabbitmqctl, "delete_user", user_name(service) + suffix
                    )
    finally:
        for child in children.values():
            if child.proc.returncode is None:
                child.proc.kill()
        await asyncio.to_thread(rabbit.delete_vhost, vhost)


async def test_no_secret_and_no_openid_in_any_log_line_or_metrics(tmp_path: Path) -> None:
    known = Known()
    openids = [f"o{uuid.uuid4().hex[:27]}" for _ in range(4)]
    async with system(known, tmp_path) as run:
        children, sim = run.children, run.sim

        def pusher(openid: str, token: str = known.token) -> Pusher:
            return Pusher(
                run.push_url,
                token=token,
                appid=known.appid,
                aes_key=known.aes_key,
                mode="safe",
                fmt="xml",
                sim=sim,
                gh_id=known.gh_id,
                openid=openid,
                attempts=1,
            )

        ok, refused, faulted, outage = openids
        # A conversation that works.
        talk = pusher(ok)
        await talk.enter_session()
        await talk.text("你好")
        await eventually(lambda: sim.inbox(ok), lambda box: len(box) >= 1, deadline_s=DEADLINE_S)
        await talk.close()
        # A push signed with another Token.
        forged = pusher(refused, token="not-the-token")
        result = await forged.text("你好")
        assert {a.status for a in result.answers} == {401}
        await forged.close()
        # WeChat refusing: an invalid token (refreshed), a quota error, a 500.
        sim.faults.add(
            FaultRule(
                path="/cgi-bin/message/custom/send",
                sequence=[Fault(errcode=40001), Fault(errcode=45047), Fault(status=500)],
            )
        )
        talk = pusher(faulted)
        await talk.enter_session()
        await talk.text("你好")
        await talk.text("在吗")
        # Past the faults, the sender gets a reply through.
        await eventually(
            lambda: sim.inbox(faulted), lambda box: len(box) >= 1, deadline_s=DEADLINE_S
        )
        # The media API without its token, and with a wrong one.
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                url = f"{run.media_url}/v1/media"
                async with http.post(url, data=b"x", headers=headers) as resp:
                    assert resp.status == 401
        await talk.close()
        # The broker down, then Redis down, while the user talks.
        talk = pusher(outage)
        for proxy in run.proxies:
            proxy.down()
            await talk.text("有人吗")
            proxy.up()
        await talk.close()
        # Every service still answers, and says so on its internal port.
        for child in children.values():
            await ready(await child.internal_url("/readyz"))
        expositions = {}
        async with aiohttp.ClientSession() as http:
            for name, child in children.items():
                async with http.get(await child.internal_url("/metrics")) as resp:
                    expositions[name] = await resp.text()
    issued = list(sim.tokens.records)
    assert issued, "the simulated WeChat issued access tokens"
    wanted = known.values() | {f"access token {n}": t for n, t in enumerate(issued)}
    wanted |= {f"openid {n}": o for n, o in enumerate(openids)}
    lines = {name: child.lines for name, child in children.items()}
    assert sum(len(v) for v in lines.values()) > 100, "debug lines of every service"
    # Every error path ran, and logged what a leak would hide in.
    ran = {
        "a forged signature refused": ("ingress", "push.refused", "bad_signature"),
        "WeChat refusing the token": ("sender", "wechat.token_rejected", ""),
        "a send retried after WeChat's 500": ("sender", "send.retry", ""),
        "the broker down: the push spooled": ("ingress", "push.spooling", ""),
        "Redis down: the push published unclaimed": ("ingress", "dedupe.store_unavailable", ""),
    }
    missing = [
        path
        for path, (name, event, fragment) in ran.items()
        if not any(f'"{event}"' in line and fragment in line for line in lines[name])
    ]
    assert missing == [], missing
    texts = {
        (name, where): text
        for name in children
        for where, text in (("log", "\n".join(lines[name])), ("/metrics", expositions[name]))
    }
    hits = [
        f"{what} in {name}'s {where}: {_around(text, value, what)}"
        for (name, where), text in texts.items()
        for what, value in wanted.items()
        if value in text
    ]
    assert hits == [], "\n".join(hits)


def _around(text: str, value: str, what: str) -> str:
    """The line that shows ``value``, with the value itself named, not shown."""
    at = text.index(value)
    start, end = text.rfind("\n", 0, at) + 1, text.find("\n", at)
    return text[start : end if end >= 0 else None].replace(value, f"<{what}>")[:400]
