"""``wxkf demo``: the scripted conversation passes as a command, and fails loudly when WeChat
does not behave.

The ports are 0 (free ones) so the demo runs beside anything else on the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from services.demo.ports import claim
from services.demo.run import Layout, play_demo, prepare
from services.demo.settings import PORT_VARIABLES
from services.simulator.clock import SimClock
from services.simulator.config import DEMO_OPENID, SimConfig
from services.simulator.faults import Fault, FaultRule
from services.simulator.state import SimState

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 240.0
"""The script takes seconds; the bound is for a machine that is very busy, not for speed."""

pytestmark = pytest.mark.e2e


def demo_environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXKF_")}
    env |= dict.fromkeys(PORT_VARIABLES.values(), "0")
    env["WXKF_DEMO_DIR"] = str(tmp_path)
    return env


async def test_wxkf_demo_exit_passes_every_step(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "demo",
        "--exit",
        cwd=ROOT,
        env=demo_environment(tmp_path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=DEMO_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    console = out.decode()
    assert proc.returncode == 0, console + err.decode()
    assert console.count("   ✓ ") == 5
    assert "✓ all 5 steps had their expected outcome." in console
    for shown in ("transfer_customer_service", "outbound.rejected.quota_exhausted", "/metrics"):
        assert shown in console
    # The services logged to the file the console names, not to the console...
    log = tmp_path / "services.log"
    assert f"The services log to {log}" in console
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert {"runner.listening", "decision.made", "push.transferred"} <= {e["event"] for e in lines}
    assert err.decode().strip() == ""
    # ...and never named the user but by a hash, nor said what they wrote.
    text = log.read_text(encoding="utf-8")
    assert DEMO_OPENID not in text
    assert "转人工" not in text


async def test_a_step_without_its_outcome_fails_the_demo_and_is_named(tmp_path: Path) -> None:
    # WeChat refuses every message as outside the reply window: nothing reaches the user.
    sim = SimState(SimConfig(), clock=SimClock())
    refuse = Fault(errcode=45015)
    sim.faults.add(FaultRule(path="/cgi-bin/message/custom/send", rate=1.0, outcomes=[refuse]))
    ports = claim(dict.fromkeys(PORT_VARIABLES, 0))
    printed: list[str] = []
    layout: Layout = prepare(str(tmp_path))
    code = await asyncio.wait_for(
        play_demo(ports, layout, exit_after=True, say=printed.extend, sim=sim),
        timeout=DEMO_TIMEOUT_S,
    )
    assert code == 1
    console = "\n".join(printed)
    assert "✗ step 1 (welcome) failed: text was not sent: rejected: window_expired" in console
    assert "2/5" not in console
