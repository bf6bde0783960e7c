"""``wxkf sim``: push, verify and load against an in-test endpoint; api as a real process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestServer
from sim_helpers import PNG, Ingress, ingress_app

from libs.common.wechat import codec
from services.cli import build_parser
from services.simulator import cli
from services.simulator.app import create_app, running
from services.simulator.config import DEMO_OPENID
from services.simulator.state import SimState


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Ingress, str]]:
    ingress = Ingress()
    async with TestServer(ingress_app(ingress)) as server:
        yield ingress, str(server.make_url("/wechat"))


async def test_push_text_prints_the_outcome(
    endpoint: tuple[Ingress, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ingress, url = endpoint
    args = build_parser().parse_args(["sim", "push", "--url", url, "--text", "你好"])
    assert await cli._push_async(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"text from {DEMO_OPENID}: success after 1 attempt(s)")
    assert "attempt 1: HTTP 200 success" in out
    msg = ingress.opened[0].message
    assert isinstance(msg, codec.TextMessage)
    assert msg.content == "你好"
    assert ingress.opened[0].encrypted  # safe mode with the demo key by default


async def test_push_failure_exits_1_with_the_user_notice(
    endpoint: tuple[Ingress, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ingress, url = endpoint
    ingress.script = ["500", "500", "500"]
    args = build_parser().parse_args(["sim", "push", "--url", url, "--enter"])
    assert await cli._push_async(args) == 1
    out = capsys.readouterr().out
    assert "user_enter_tempsession" in out
    assert "the user sees: 该小程序客服暂时无法提供服务，请稍后再试" in out


async def test_push_json_and_other_kinds(
    endpoint: tuple[Ingress, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ingress, url = endpoint
    image = tmp_path / "a.png"
    image.write_bytes(PNG)
    sim_state = SimState()
    async with running(create_app(state=sim_state)) as sim_url:
        for extra in (
            ["--card", "标题", "pages/index/index"],
            ["--msgtype", "voice"],
            ["--event", "debug_demo"],
            ["--image", str(image), "--sim", sim_url],
        ):
            argv = ["sim", "push", "--url", url, "--json", "--format", "json", *extra]
            assert await cli._push_async(build_parser().parse_args(argv)) == 0
            result = msgspec.json.decode(capsys.readouterr().out)
            assert result["outcome"] == "success"
    kinds = [type(o.message) for o in ingress.opened]
    assert kinds == [
        codec.MiniProgramPageMessage,
        codec.UnknownMessage,
        codec.UnknownEvent,
        codec.ImageMessage,
    ]
    assert len(sim_state.media.items) == 1


async def test_push_bad_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["sim", "push", "--url", "http://127.0.0.1:9/x", "--aes-key", "short"]
    assert await cli._push_async(build_parser().parse_args(argv)) == 2
    assert "EncodingAESKey" in capsys.readouterr().err
    missing = str(tmp_path / "missing.png")
    argv = ["sim", "push", "--url", "http://127.0.0.1:9/x", "--image", missing]
    assert await cli._push_async(build_parser().parse_args(argv)) == 2
    assert "missing.png" in capsys.readouterr().err


async def test_verify(endpoint: tuple[Ingress, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, url = endpoint
    args = build_parser().parse_args(["sim", "verify", "--url", url, "--echostr", "12345"])
    assert await cli._verify_async(args) == 0
    assert capsys.readouterr().out == "verified: the URL echoed 12345\n"
    args = build_parser().parse_args(["sim", "verify", "--url", url, "--token", "wrong"])
    assert await cli._verify_async(args) == 1
    assert "not verified" in capsys.readouterr().out


async def test_load_prints_rate_and_latency(
    endpoint: tuple[Ingress, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = endpoint
    argv = ["sim", "load", "--url", url, "--users", "3", "--rate", "40", "--duration", "0.1"]
    assert await cli._load_async(build_parser().parse_args(argv)) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].startswith("pushes: 4 completed of 4 begun")
    assert out[1] == "outcomes: success=4"
    assert out[2] == "errors: none"
    assert out[3].startswith("ACK latency ms: p50 ")
    assert out[4].startswith("replies at the simulator: not counted")
    assert "without --sim the simulator does not know these users wrote" in captured.err


@pytest.mark.parametrize("action", ["api", "push", "verify", "load"])
def test_every_option_says_what_it_is_for(action: str) -> None:
    import argparse

    def sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
        (actions,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        found: argparse.ArgumentParser = actions.choices[name]
        return found

    parser = sub(sub(build_parser(), "sim"), action)
    silent = [
        a.option_strings[0]
        for a in parser._actions
        if a.option_strings and a.help in (None, "") and a.dest != "help"
    ]
    assert silent == []


def test_load_needs_a_pace() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sim", "load", "--url", "http://x"])


def test_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WXKF_TOKEN", "envtoken")
    monkeypatch.setenv("WXKF_PUSH_MODE", "plain")
    monkeypatch.setenv("WXKF_PUSH_FORMAT", "json")
    monkeypatch.setenv("WXKF_APPID", "wx1234567890abcdef")
    args = build_parser().parse_args(["sim", "push", "--url", "http://x"])
    assert (args.token, args.mode, args.format, args.appid) == (
        "envtoken",
        "plain",
        "json",
        "wx1234567890abcdef",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_api_command_serves_until_stopped_and_keeps_its_state(tmp_path: Path) -> None:
    port = _free_port()
    saved = tmp_path / "up" / "simulator.json"
    wxkf = str(Path(sys.executable).with_name("wxkf"))
    argv = [wxkf, "sim", "api", "--port", str(port), "--frozen-clock", "--start", "1000"]
    proc = subprocess.Popen(  # noqa: ASYNC220, S603 - our own script, fixed args, stopped below
        [*argv, "--state", str(saved)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "WXKF_APPID": "wx00000000000000aa"},
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/sim/clock") as resp:
                        assert await resp.json() == {"now": 1000.0}
                        break
                except aiohttp.ClientConnectionError:
                    assert loop.time() < deadline, "the simulator did not start"
                    assert proc.poll() is None, "the simulator exited"
                    await asyncio.sleep(0.1)
            query = {"grant_type": "client_credential", "appid": "wx00000000000000aa"}
            query["secret"] = "0c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f"
            async with session.get(f"http://127.0.0.1:{port}/cgi-bin/token", params=query) as r:
                answer = await r.json(content_type=None)
                assert answer["expires_in"] == 7200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"on http://127.0.0.1:{port} (appid wx00000000000000aa)" in out.decode()
    assert f"state kept in {saved}" in out.decode()
    assert answer["access_token"] in saved.read_text()  # written when stopped
