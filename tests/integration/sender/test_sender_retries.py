"""Failures: transient ones are retried through the bus, permanent ones reported at once,
exhausted ones dead-lettered (and replayable), ambiguous ones per the configured policy."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from libs.common.schemas import Failed, Sent
from libs.common.topology import SENDER_COMMANDS
from services.simulator.api import SEND
from services.simulator.faults import Fault
from tests.integration.sender.conftest import Rig, dead_ids
from tests.support.metrics import sample
from tests.support.waiting import eventually


async def test_transient_failures_are_retried_in_order_and_delivered_once(rig: Rig) -> None:
    # Timeouts and dropped connections are ambiguous: retried only when the policy says so.
    # Backoff up to 3.2 s: the later replies wait (and spend attempts) while the first retries.
    await rig.start_sender(ambiguous_retry="text", wechat_timeout_s=0.5)
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(
        SEND,
        Fault(errcode=-1),
        Fault(errcode=45009),
        Fault(status=502),
        Fault(drop=True),  # closed without an answer; nothing delivered
        Fault(errcode=-1, latency_ms=1500),  # a timeout on our side; nothing delivered
    )
    commands = rig.texts(user, ["first", "second", "third"])
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    assert all(isinstance(outcomes[c.id], Sent) for c in commands)
    assert rig.received(user) == ["first", "second", "third"]
    assert max(o.attempts for o in outcomes.values()) > 1
    assert rig.sim.stats.total(SEND, "http_502") == 1
    assert rig.sim.stats.total(SEND, "dropped") == 1


async def test_a_failure_frees_the_window_slot_it_had_taken(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, *[Fault(errcode=-1)] * 4)
    commands = rig.texts(user, [f"m{i}" for i in range(5)])
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    # Four refused calls took no slot: all five replies still fit the window of five.
    assert all(isinstance(outcomes[c.id], Sent) for c in commands)
    assert len(rig.received(user)) == 5


async def test_a_permanent_error_fails_at_once_with_its_errcode(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, Fault(errcode=40003, errmsg="invalid openid rid: 1-2-3"))
    commands = rig.texts(user, ["to a stranger", "next in line"])
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    failed = outcomes[commands[0].id]
    assert isinstance(failed, Failed)
    assert (failed.errcode, failed.attempts) == (40003, 1)
    assert failed.routing_key() == "outbound.failed.text"
    assert "invalid openid" in failed.errmsg
    # Not retried; and a failed predecessor counts as done for the rest of its cause.
    assert isinstance(outcomes[commands[1].id], Sent)
    assert rig.sim.stats.total(SEND, 40003) == 1
    assert rig.received(user) == ["next in line"]
    assert commands[0].id not in await dead_ids(rig.bus, SENDER_COMMANDS.name)


async def test_content_wechat_would_refuse_is_failed_without_a_call(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    commands = rig.texts(user, ["bell \x07", ""])
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    control, empty = (outcomes[c.id] for c in commands)
    assert isinstance(control, Failed)
    assert "control characters" in control.errmsg
    assert isinstance(empty, Failed)
    assert "empty" in empty.errmsg
    assert rig.sim.stats.total(SEND) == 0


async def test_exhausted_attempts_go_to_the_dead_letter_queue_and_replay(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, *[Fault(errcode=-1)] * SENDER_COMMANDS.max_attempts)
    [cmd] = rig.texts(user, ["persistent"])
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Failed)
    assert outcome.errcode == -1
    assert outcome.attempts == SENDER_COMMANDS.max_attempts
    assert outcome.errmsg.startswith("attempts exhausted")
    await eventually(lambda: dead_ids(rig.bus, SENDER_COMMANDS.name), lambda ids: cmd.id in ids)
    assert rig.received(user) == []
    # The fault is gone: replaying the dead letter delivers it, once. (A dead letter just
    # peeked at may take a moment to be back in its queue, so replay until it went.)

    async def replayed() -> list[str]:
        if cmd.id in await dead_ids(rig.bus, SENDER_COMMANDS.name):
            await replay(rig, SENDER_COMMANDS.name)
        return rig.received(user)

    await eventually(replayed, lambda got: got == ["persistent"], every_s=0.2)
    sent = await eventually(
        lambda: [f for f in rig.outcomes(user) if isinstance(f, Sent)], bool, what="sent"
    )
    assert sent[0].command_id == cmd.id
    assert cmd.id not in await dead_ids(rig.bus, SENDER_COMMANDS.name)
    assert rig.received(user) == ["persistent"]


async def replay(rig: Rig, queue: str) -> None:
    """``wxkf dlq replay QUEUE``: the command itself on RabbitMQ; on memory:// (whose dead
    letters live in this process) the same bus call it makes."""
    if rig.backend == "memory":
        await rig.bus.replay_dead_letters(queue)
        return
    wxkf = Path(sys.executable).with_name("wxkf")
    done = await asyncio.create_subprocess_exec(
        str(wxkf),
        "dlq",
        "replay",
        queue,
        env={**os.environ, "WXKF_BUS_URL": rig.bus_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await done.communicate()
    assert done.returncode == 0, err.decode()
    assert out.decode().startswith("replayed "), out.decode()


async def test_ambiguous_failure_given_up_by_default_never_sends_twice(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, Fault(accept_then_drop=True))
    [cmd] = rig.texts(user, ["maybe delivered"])
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Failed)
    assert outcome.errcode is None
    assert outcome.errmsg.startswith("ambiguous:")
    # WeChat had delivered it: reported failed, but the user got it exactly once.
    assert rig.received(user) == ["maybe delivered"]
    assert rig.sim.stats.total(SEND, "dropped") == 1  # one call, never tried again


async def test_ambiguous_failure_retried_when_configured_may_send_twice(rig: Rig) -> None:
    await rig.start_sender(ambiguous_retry="text,image")
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, Fault(accept_then_drop=True))
    [cmd] = rig.texts(user, ["at least once"])
    await rig.send(cmd)
    outcome = (await rig.settled([cmd]))[cmd.id]
    assert isinstance(outcome, Sent)
    assert outcome.attempts == 2
    # Never lost, and here delivered twice: the price of at least once without a message id.
    assert rig.received(user) == ["at least once", "at least once"]


async def test_a_redelivered_command_is_not_sent_again(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    [cmd] = rig.texts(user, ["once only"])
    await rig.send(cmd)
    first = (await rig.settled([cmd]))[cmd.id]
    await rig.send(cmd)  # the same command again (a publisher retry, a replay)
    repeats = await eventually(
        lambda: [f for f in rig.facts if f.command_id == cmd.id], lambda got: len(got) == 2
    )
    assert repeats[1] == first  # the same fact, same id: consumers deduplicate on it
    assert rig.received(user) == ["once only"]


async def test_commands_of_one_decision_keep_their_order_whatever_their_arrival(
    rig: Rig,
) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    commands = rig.texts(user, ["one", "two", "three", "four"])
    await rig.send(*reversed(commands))
    await rig.settled(commands)
    assert rig.received(user) == ["one", "two", "three", "four"]


async def test_a_slow_first_message_holds_back_the_rest_of_its_decision(rig: Rig) -> None:
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, Fault(errcode=-1), Fault(errcode=45009), Fault(status=500))
    commands = rig.texts(user, ["one", "two", "three"])
    other = rig.texts(user, ["independent"])  # another decision: not held back
    await rig.send(*commands, *other)
    await rig.settled([*commands, *other])
    received = rig.received(user)
    assert [m for m in received if m != "independent"] == ["one", "two", "three"]


def order_retries() -> float:
    return sample("wxkf_sender_retries_total", reason="order")


async def test_the_rest_of_a_reply_follows_a_slow_first_message_without_a_retry(rig: Rig) -> None:
    # The messages of one decision reach this replica together; while the first is in
    # WeChat's hands the others wait for it here, instead of a retry's delay (seconds).
    await rig.start_sender()
    user = rig.openid()
    await rig.user_message(user)
    rig.fault(SEND, Fault(latency_ms=300))
    commands = rig.texts(user, ["text", "image", "card"])
    before = order_retries()
    await rig.send(*commands)
    outcomes = await rig.settled(commands)
    assert rig.received(user) == ["text", "image", "card"]
    assert all(isinstance(outcomes[c.id], Sent) for c in commands)
    assert order_retries() == before
