"""``wxkf up`` as a person runs it in a terminal, on ports other than the defaults: every rule
of the shipped rules answers as it does in the demo, ``wxkf sim load`` counts what became of
each push at the simulator, nothing is logged per message at info, and one Ctrl-C (SIGINT to
the whole process group, as a terminal sends it) stops every process gracefully.

The run keeps to a vhost, a Redis database, ports and a directory of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from libs.common.schemas import (
    Command,
    InboundEvent,
    MiniProgramPageReceived,
    SessionEntered,
    TextReceived,
)
from services.router import plans
from services.router.compiler import compile_file
from services.router.sessions import Session
from services.simulator.config import DEMO_AES_KEY, DEMO_APPID, DEMO_GH_ID, DEMO_TOKEN
from services.simulator.pusher import Pusher
from tests.deploy.monitoring_rig import free_ports
from tests.support import rabbit
from tests.support.redis_db import redis_database
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "examples" / "rules.yaml"
PARTS = ("simulator", "ingress", "router", "sender", "media")
START_DEADLINE_S = 120.0
"""Five Python processes starting one after the other on two busy cores."""
PER_MESSAGE = ("push.accepted", "decision.made", "window.granted", "send.sent", "upload_answered")


@dataclass
class Up:
    """One ``wxkf up`` process (its own session, as a terminal's foreground job) and its lines."""

    proc: asyncio.subprocess.Process
    ports: dict[str, int]
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)


@contextlib.asynccontextmanager
async def wxkf_up(tmp_path: Path) -> AsyncIterator[Up]:
    ports = free_ports(*PARTS)
    vhost = await asyncio.to_thread(rabbit.add_vhost, "wxkf-up")
    try:
        async with redis_database() as store_url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("WXKF_")}
            # The router and the sender serve only the internal port: no port of their own.
            env |= {f"WXKF_{name.upper()}_PORT": str(ports[name]) for name in ("ingress", "media")}
            env |= {
                "WXKF_SIM_PORT": str(ports["simulator"]),
                "WXKF_INTERNAL_PORT": "0",
                "WXKF_BUS_URL": rabbit.url(vhost),
                "WXKF_STORE_URL": store_url,
                "WXKF_UP_DIR": str(tmp_path / "up"),
                "WXKF_SHUTDOWN_GRACE_S": "5",
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.cli",
                "up",
                "--fresh",
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a process group of its own, as a terminal gives it
            )
            up = Up(proc=proc, ports=ports)
            up.reader = asyncio.create_task(up.read())
            try:
                yield up
            finally:
                if proc.returncode is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()
                await up.reader
    finally:
        await asyncio.to_thread(rabbit.delete_vhost, vhost)


async def until_ready(up: Up) -> None:
    def ready() -> bool:
        if up.proc.returncode is not None:
            raise AssertionError(f"wxkf up ended with {up.proc.returncode}:\n{up.output()}")
        return any("processes ready" in line for line in up.lines)

    await eventually(ready, deadline_s=START_DEADLINE_S, every_s=0.1, what="wxkf up ready")


def expected(event: InboundEvent, session: Session) -> list[str]:
    """The message types the shipped rules send for ``event`` (as ``wxkf rules test`` shows),
    typing indicators aside."""
    ruleset = compile_file(RULES)
    decision = ruleset.decide(event, session, ts=float(event.create_time))
    commands: list[Command] = plans.commands(decision, event)
    return [c.msgtype for c in commands if c.msgtype != "typing"]


async def inbox(http: aiohttp.ClientSession, up: Up, openid: str) -> list[str]:
    async with http.get(up.url("simulator", f"/sim/users/{openid}/inbox")) as resp:
        return [m["msgtype"] for m in (await resp.json())["messages"]]


async def test_up_serves_the_shipped_rules_counts_a_load_and_stops_on_one_ctrl_c(
    tmp_path: Path,
) -> None:
    async with wxkf_up(tmp_path) as up:
        await until_ready(up)
        ready_at = len(up.lines)
        assert f"push URL {up.url('ingress', '/wechat')}" in up.output()
        # As in prod: each service its own broker and Redis user (services/up/users.py).
        assert "each service is a broker and Redis user of its own" in up.output()

        # Every rule that answers, as a user of its own each (a transfer would hold the next).
        tries: list[tuple[str, str | None]] = [
            ("enter", None),
            ("text", "几天到"),
            ("text", "换尺码"),
            ("text", "尺码"),
            ("text", "退货"),
            ("card", "pages/goods/1"),
            ("text", "谢谢"),
            ("text", "你好"),
            ("text", "转人工"),
        ]
        async with aiohttp.ClientSession() as http:
            for kind, what in tries:
                openid = "oUp" + uuid.uuid4().hex[:24]
                async with Pusher(
                    up.url("ingress", "/wechat"),
                    token=DEMO_TOKEN,
                    appid=DEMO_APPID,
                    aes_key=DEMO_AES_KEY,
                    gh_id=DEMO_GH_ID,
                    sim=up.url("simulator"),
                    openid=openid,
                ) as pusher:
                    if kind == "enter":
                        result = await pusher.enter_session()
                    elif kind == "card":
                        result = await pusher.miniprogrampage(title="围巾", page_path=what or "")
                    else:
                        result = await pusher.text(what or "")
                assert result.ok, result
                event = as_event(kind, what, openid, result.create_time)
                want = expected(event, Session())
                assert want, f"{kind} {what}: the shipped rules send nothing?"
                got = await eventually(
                    lambda o=openid: inbox(http, up, o),  # type: ignore[misc]
                    lambda msgs, w=want: len(msgs) >= len(w),  # type: ignore[misc]
                    what=f"the replies to {kind} {what}",
                )
                assert got == want, f"{kind} {what}"

        # The README's load: every reply delivered, counted at the simulator.
        load = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "sim",
            "load",
            "--url",
            up.url("ingress", "/wechat"),
            "--sim",
            up.url("simulator"),
            "--users",
            "5",
            "--rate",
            "20",
            "--duration",
            "1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await load.communicate()
        report = out.decode()
        assert load.returncode == 0, report + err.decode()
        assert "replies at the simulator: 20 delivered, 0 refused, 0 still pending" in report

        # At info, a message leaves no line of its own in any service's log.
        after = "\n".join(up.lines[ready_at:])
        assert not [name for name in PER_MESSAGE if name in after], after
        assert "send.failed" not in after

        # One Ctrl-C: the terminal's SIGINT to every process of the group.
        os.killpg(up.proc.pid, signal.SIGINT)
        code = await asyncio.wait_for(up.proc.wait(), timeout=60)
        assert up.reader is not None
        await up.reader
        output = up.output()
        assert code == 0, output
        for part in PARTS:
            stopped = re.findall(rf"^{part}\s+\|.*runner\.stopped\b", output, flags=re.M)
            assert len(stopped) == 1, f"{part}:\n{output}"
        assert "Traceback" not in output
        assert "runner.stopped_at_once" not in output
        assert output.rstrip().endswith("wxkf up: every process stopped gracefully")
        # The simulated WeChat's memory is kept for the next run.
        assert "oUp" in (tmp_path / "up" / "simulator.json").read_text()


def as_event(kind: str, what: str | None, openid: str, at: int) -> InboundEvent:
    """The bus event of what was pushed, for the rules to decide on."""
    common = {
        "appid": DEMO_APPID,
        "openid": openid,
        "correlation_id": "up",
        "to_user": DEMO_GH_ID,
        "create_time": at,
    }
    if kind == "enter":
        return SessionEntered(**common)
    if kind == "card":
        return MiniProgramPageReceived(**common, msg_id=1, title="围巾", page_path=what or "")
    return TextReceived(**common, msg_id=1, content=what or "")
