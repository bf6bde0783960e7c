"""The sender's Prometheus metrics, as ``/metrics`` would show them.

The registry is process-wide (other tests count into it too), so each test reads a sample
before and after what it does and checks the difference.
"""

from __future__ import annotations

from collections.abc import Callable

from libs.common.schemas import Failed, Rejected, Sent
from libs.common.topology import SENDER_COMMANDS
from services.simulator.api import SEND
from services.simulator.faults import Fault
from tests.integration.sender.conftest import Rig, dead_ids, retries
from tests.support.metrics import sample
from tests.support.waiting import eventually

SLOW_MS = 200.0


def calls(api: str, result: str) -> float:
    return sample("wxkf_wechat_api_calls_total", service="sender", api=api, result=result)


def call_seconds(api: str, part: str) -> float:
    """``part``: ``count`` or ``sum`` of the latency histogram."""
    return sample(f"wxkf_wechat_api_call_duration_seconds_{part}", service="sender", api=api)


def quota(decision: str) -> float:
    return sample("wxkf_sender_quota_decisions_total", decision=decision)


def commands(msgtype: str, outcome: str) -> float:
    return sample("wxkf_sender_commands_total", msgtype=msgtype, outcome=outcome)


def refreshes(kind: str, outcome: str) -> float:
    return sample("wxkf_wechat_token_refreshes_total", service="sender", kind=kind, outcome=outcome)


def deltas(probes: dict[str, Callable[[], float]]) -> Callable[[], dict[str, float]]:
    """Read every probe now; the returned function says how much each has grown since."""
    before = {name: probe() for name, probe in probes.items()}
    return lambda: {name: probe() - before[name] for name, probe in probes.items()}


async def test_wechat_calls_are_counted_by_api_and_errcode_and_timed(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    warmup = rig.texts(user, ["token first"])  # the token call is counted apart (see below)
    await rig.send(*warmup)
    await rig.settled(warmup)
    grown = deltas(
        {
            "ok": lambda: calls("send", "0"),
            "invalid_openid": lambda: calls("send", "40003"),
            "timed": lambda: call_seconds("send", "count"),
            "seconds": lambda: call_seconds("send", "sum"),
            "sent": lambda: commands("text", "sent"),
            "failed": lambda: commands("text", "failed"),
        }
    )
    # One refused with an errcode, one accepted and answered 200 ms late.
    rig.fault(SEND, Fault(errcode=40003), Fault(latency_ms=SLOW_MS))
    refused, slow = rig.texts(user, ["refused"]), rig.texts(user, ["slow"])
    await rig.send(*refused)
    assert isinstance((await rig.settled(refused))[refused[0].id], Failed)
    await rig.send(*slow)
    assert isinstance((await rig.settled(slow))[slow[0].id], Sent)
    growth = grown()
    assert growth.pop("seconds") >= SLOW_MS / 1000  # the histogram's sum holds the slow answer
    assert growth == {"ok": 1, "invalid_openid": 1, "timed": 2, "sent": 1, "failed": 1}


async def test_window_decisions_are_counted(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    grown = deltas(
        {
            "message_grants": lambda: sample("wxkf_sender_window_grants_total", kind="message"),
            "granted": lambda: quota("granted"),
            "quota_exhausted": lambda: quota("quota_exhausted"),
            "rejected": lambda: commands("text", "rejected"),
            "calls": lambda: calls("send", "0"),
        }
    )
    await rig.user_message(user)
    batch = rig.texts(user, [f"reply {i}" for i in range(6)])
    await rig.send(*batch)
    outcomes = await rig.settled(batch)
    last = outcomes[batch[-1].id]
    assert isinstance(last, Rejected)
    assert last.reason == "quota_exhausted"
    assert grown() == {
        "message_grants": 1,
        "granted": 5,
        "quota_exhausted": 1,
        "rejected": 1,
        "calls": 5,
    }


async def test_retries_are_counted_by_reason(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    reasons = ("system_busy", "daily_quota_reached", "unavailable", "frequency_limited")
    grown = deltas({reason: lambda r=reason: retries(r) for reason in reasons})
    rig.fault(
        SEND, Fault(errcode=-1), Fault(errcode=45009), Fault(status=502), Fault(errcode=45011)
    )
    [cmd] = rig.texts(user, ["eventually"])
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Sent)
    assert outcome.attempts == 5
    assert grown() == dict.fromkeys(reasons, 1)


async def test_exhausted_attempts_are_counted_as_dead_letters(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    attempts = SENDER_COMMANDS.max_attempts
    grown = deltas(
        {
            "dead_letters": lambda: sample("wxkf_sender_dead_letters_total", msgtype="text"),
            "retries": lambda: retries("system_busy"),
            "failed": lambda: commands("text", "failed"),
            "busy_answers": lambda: calls("send", "-1"),
        }
    )
    rig.fault(SEND, *[Fault(errcode=-1)] * attempts)
    [cmd] = rig.texts(user, ["never through"])
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Failed)
    assert outcome.errmsg.startswith("attempts exhausted")
    await eventually(lambda: dead_ids(rig.bus, SENDER_COMMANDS.name), lambda ids: cmd.id in ids)
    # Every attempt but the last was retried; the last was dead-lettered.
    assert grown() == {
        "dead_letters": 1,
        "retries": attempts - 1,
        "failed": 1,
        "busy_answers": attempts,
    }


async def test_token_refreshes_are_counted_by_kind_and_outcome(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    kinds = [("normal", "ok"), ("normal", "unchanged"), ("forced", "ok")]
    grown = deltas(
        {
            **{f"{k}_{o}": lambda k=k, o=o: refreshes(k, o) for k, o in kinds},
            "token_calls": lambda: calls("stable_token", "0"),
            "refused_token": lambda: calls("send", "40001"),
        }
    )
    first = rig.texts(user, ["first"])
    await rig.send(*first)  # no token yet: one normal refresh
    await rig.settled(first)
    assert grown() == {
        "normal_ok": 1,
        "normal_unchanged": 0,
        "forced_ok": 0,
        "token_calls": 1,
        "refused_token": 0,
    }
    # WeChat refuses the token; normal mode hands back the same one, so it is forced.
    rig.fault(SEND, Fault(errcode=40001, errmsg="invalid credential, access_token is invalid"))
    second = rig.texts(user, ["after a refused token"])
    await rig.send(*second)
    assert isinstance((await rig.settled(second))[second[0].id], Sent)
    assert grown() == {
        "normal_ok": 1,
        "normal_unchanged": 1,
        "forced_ok": 1,
        "token_calls": 3,
        "refused_token": 1,
    }
