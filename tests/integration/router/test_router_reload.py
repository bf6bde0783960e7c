"""Hot reload under traffic: a valid file is swapped in, an invalid one keeps the old rules,
and no event is lost or handled twice either way."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from pathlib import Path

from libs.common.schemas import SendText, TextReceived
from services.router.keys import RULES
from tests.support.metrics import sample
from tests.support.waiting import eventually

from .conftest import Rig, rules_text


def replace_file(path: Path, text: str) -> None:
    """Write beside, then rename over: how editors and ConfigMap updates replace a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def reply_of(rig: Rig, event: TextReceived) -> str:
    (cmd,) = rig.commands_for(event)
    assert isinstance(cmd, SendText)
    return cmd.content


async def test_reload_under_traffic_loses_no_event(rig: Rig) -> None:
    app = await rig.start_router()
    user = rig.openid()
    sent: list[TextReceived] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        # What ingress does for each message: publish it and wait for the decision.
        n = 0
        while not stop.is_set():
            event = rig.text(user, f"msg {n}")
            n += 1
            sent.append(event)
            await rig.ask(event)

    pusher = asyncio.create_task(traffic())
    try:
        await eventually(lambda: len(rig.commands) >= 5, what="traffic under the first rules")
        # 1. A valid new file is swapped in while events flow.
        replace_file(rig.rules_path, rules_text("v2"))
        await eventually(
            lambda: [c for c in rig.commands if isinstance(c, SendText) and "v2:" in c.content],
            what="replies from the new rules",
        )
        # 2. An invalid file keeps the rules in use, and says so.
        failures = sample("wxkf_router_rules_reloads_total", outcome="invalid")
        replace_file(rig.rules_path, "rules:\n  - name: broken\n    match: {type: nope}\n")
        await eventually(
            lambda: sample("wxkf_router_rules_reloads_total", outcome="invalid"),
            lambda n: n > failures,
            what="the invalid file refused",
        )
        assert sample("wxkf_router_rules_file_valid") == 0
        marker = len(sent)
        await eventually(lambda: len(sent) >= marker + 5, what="traffic after the invalid file")
    finally:
        stop.set()
        await pusher
    await eventually(
        lambda: {c.cause_id for c in rig.commands} >= {e.id for e in sent},
        what=f"a reply for each of {len(sent)} events",
    )
    # Exactly one command per event: none lost, none doubled, across both swaps.
    assert sorted(c.cause_id for c in rig.commands) == sorted(e.id for e in sent)
    assert all(reply_of(rig, e).startswith("v2:") for e in sent[marker:])
    # The rules in use are still those of the valid v2 file.
    assert app[RULES].current.digest == hashlib.sha256(rules_text("v2").encode()).hexdigest()
    assert "v2" in reply_of(rig, sent[-1])
    # 3. A good file again: valid once more.
    replace_file(rig.rules_path, rules_text("v3"))
    await eventually(lambda: sample("wxkf_router_rules_file_valid"), what="the file valid again")
    last = rig.text(user, "after")
    await rig.ask(last)
    await rig.commanded(last, 1)
    assert reply_of(rig, last) == "v3: after"


async def test_sighup_reloads_at_once(rig: Rig) -> None:
    # No polling: only the signal can make the router read the file again.
    await rig.start_router(router_rules_poll_s=0)
    assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    user = rig.openid()
    first = rig.text(user, "one")
    await rig.ask(first)
    await rig.commanded(first, 1)
    assert reply_of(rig, first) == "v1: one"
    reloads = sample("wxkf_router_rules_reloads_total", outcome="ok")
    replace_file(rig.rules_path, rules_text("hup"))
    os.kill(os.getpid(), signal.SIGHUP)
    await eventually(
        lambda: sample("wxkf_router_rules_reloads_total", outcome="ok"),
        lambda n: n > reloads,
        what="the reload on SIGHUP",
    )
    second = rig.text(user, "two")
    await rig.ask(second)
    await rig.commanded(second, 1)
    assert reply_of(rig, second) == "hup: two"
