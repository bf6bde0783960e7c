"""Looking at and replaying dead letters, on both backends, and the ``wxkf dlq`` command on
RabbitMQ."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from libs.common.bus import BusError, DeadLetter
from libs.common.bus.outcomes import Reject
from libs.common.schemas import AnyMessage, TextReceived, decode, encode
from libs.common.topology import CORE_QUEUES, DEAD, ROUTER_EVENTS
from tests.support.bus_harness import (
    AmqpHarness,
    Delivery,
    Harness,
    Recorder,
    text,
    wait_depth,
    work_spec,
)
from tests.support.waiting import eventually


class Gate:
    """Rejects every message until opened."""

    def __init__(self) -> None:
        self.open = False

    async def __call__(self, msg: AnyMessage, delivery: Delivery) -> None:
        if not self.open:
            raise Reject("closed for now")


async def dead_lettered(harness: Harness, ns: str, count: int) -> tuple[Recorder, Gate]:
    bus = await harness.bus()
    spec = work_spec(ns)
    gate = Gate()
    recorder = Recorder(gate)
    await bus.consume(spec, recorder)
    for i in range(count):
        await bus.publish(text(f"dead{i}"), routing_key=f"{ns}.msg.text")
    await eventually(
        lambda: bus.dead_letters(spec.name), lambda ls: len(ls) == count, what="dead letters"
    )
    return recorder, gate


async def test_dead_letters_can_be_looked_at_and_stay(harness: Harness, ns: str) -> None:
    await dead_lettered(harness, ns, 3)
    bus = await harness.bus()
    spec = work_spec(ns)
    some = await bus.dead_letters(spec.name, limit=2)
    assert len(some) == 2
    every = await bus.dead_letters(spec.name)
    assert len(every) == 3  # looking took nothing away
    contents = set()
    for letter in every:
        assert letter.queue == spec.name
        assert letter.reason == "rejected: closed for now"
        assert letter.attempts == 1
        assert letter.routing_key == f"{ns}.msg.text"
        msg = decode(letter.body)
        assert isinstance(msg, TextReceived)
        contents.add(msg.content)
    assert contents == {"dead0", "dead1", "dead2"}


async def test_replay_sends_dead_letters_back_with_a_fresh_attempt_count(
    harness: Harness, ns: str
) -> None:
    recorder, gate = await dead_lettered(harness, ns, 3)
    bus = await harness.bus()
    spec = work_spec(ns)
    gate.open = True
    assert await bus.replay_dead_letters(spec.name, limit=2) == 2
    seen = await recorder.wait_for(5)
    assert len(await bus.dead_letters(spec.name)) == 1
    assert await bus.replay_dead_letters(spec.name) == 1
    seen = await recorder.wait_for(6)
    replayed = seen[3:]
    assert sorted(recorder.contents()[3:]) == ["dead0", "dead1", "dead2"]
    assert all(s.delivery.attempt == 1 for s in replayed)
    await eventually(lambda: bus.dead_letters(spec.name), lambda ls: ls == [], what="empty DLQ")
    assert await bus.replay_dead_letters(spec.name) == 0


async def test_dead_letters_of_an_unknown_queue_is_a_clear_error(harness: Harness, ns: str) -> None:
    bus = await harness.bus()
    for call in (
        bus.dead_letters,
        bus.replay_dead_letters,
        bus.dead_letter_count,
        bus.drop_dead_letters,
    ):
        with pytest.raises(BusError, match=f"{ns}.nothing.dlq"):
            await call(f"{ns}.nothing")


async def test_dead_letters_are_counted_and_dropped(harness: Harness, ns: str) -> None:
    await dead_lettered(harness, ns, 3)
    bus = await harness.bus()
    queue = work_spec(ns).name
    assert await bus.dead_letter_count(queue) == 3
    assert await bus.drop_dead_letters(queue) == 3
    assert await bus.dead_letter_count(queue) == 0
    assert await bus.dead_letters(queue) == []
    assert await bus.drop_dead_letters(queue) == 0


async def test_purge_empties_a_work_queue_and_its_dead_letters(harness: Harness, ns: str) -> None:
    await dead_lettered(harness, ns, 2)
    bus = await harness.bus()
    await bus.stop_consuming()
    waiting = work_spec(ns, name=f"{ns}.idle", bindings=(f"idle{ns}.#",))
    await bus.declare([waiting])
    for i in range(3):
        await bus.publish(text(f"idle{i}"), routing_key=f"idle{ns}.msg.text")
    assert await bus.purge(work_spec(ns)) == 2
    assert await bus.purge(waiting) == 3
    assert await bus.dead_letter_count(work_spec(ns).name) == 0
    assert await bus.purge(work_spec(ns, name=f"{ns}.never")) == 0  # never declared


async def wxkf(
    *args: str, env: dict[str, str], unset: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if k not in unset}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env={**full, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_dlq_command_lists_and_replays(amqp: AmqpHarness, ns: str) -> None:
    recorder, gate = await dead_lettered(amqp, ns, 2)
    queue = work_spec(ns).name
    env = {"WXKF_BUS_URL": amqp.url}

    code, out, err = await wxkf("dlq", "list", queue, "--limit", "5", env=env)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    for line in lines[:2]:
        key, reason, attempts, preview = line.split("\t")
        assert key == f"{ns}.msg.text"
        assert reason == "rejected: closed for now"
        assert attempts == "attempts=1"
        assert preview.startswith('{"type":"msg.text"')
    assert "2 dead letter(s)" in lines[2]

    gate.open = True
    code, out, err = await wxkf("dlq", "replay", queue, env=env)
    assert code == 0, err
    assert out.strip() == f"replayed 2 dead letter(s) to {queue}"
    await recorder.wait_for(4)


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"WXKF_BUS_URL": ""}, ("list", "q"), "WXKF_BUS_URL (or WXKF_BUS_URL_FILE) is empty"),
        ({"WXKF_BUS_URL_FILE": "/nonexistent/bus-url"}, ("list", "q"), "cannot read"),
        ({"WXKF_BUS_URL": "memory://"}, ("replay", "q"), "memory://"),
        ({"WXKF_BUS_URL": "kafka://x"}, ("list", "q"), "unsupported bus URL"),
        (
            {"WXKF_BUS_URL": "amqp://guest:guest@127.0.0.1:5672/"},
            ("list", "q", "--limit", "0"),
            "--limit",
        ),
        ({"WXKF_BUS_URL": "amqp://guest:guest@127.0.0.1:5672/"}, ("drop",), "--all"),
        (
            {"WXKF_BUS_URL": "amqp://guest:guest@127.0.0.1:5672/"},
            ("drop", "q"),
            "confirm with --yes",
        ),
    ],
)
async def test_the_dlq_command_explains_bad_input(
    env: dict[str, str], args: tuple[str, ...], says: str
) -> None:
    code, out, err = await wxkf("dlq", *args, env=env)
    assert code == 2
    assert says in err
    assert out == ""


async def test_the_dlq_command_names_a_missing_queue(amqp: AmqpHarness, ns: str) -> None:
    code, _, err = await wxkf("dlq", "list", f"{ns}.none", env={"WXKF_BUS_URL": amqp.url})
    assert code == 1
    assert f"{ns}.none.dlq" in err
    assert "guest:guest" not in err


async def test_the_dlq_command_reads_the_broker_from_a_mounted_file(
    amqp: AmqpHarness, ns: str, tmp_path: Path
) -> None:
    # How Kubernetes mounts the Secret: the URL in a file, WXKF_BUS_URL itself unset.
    secret = tmp_path / "bus-url"
    secret.write_text(amqp.url + "\n")
    env = {"WXKF_BUS_URL_FILE": str(secret)}
    code, _, err = await wxkf("dlq", "list", f"{ns}.none", env=env, unset=("WXKF_BUS_URL",))
    assert code == 1  # it reached the broker, which has no such queue
    assert f"{ns}.none.dlq" in err


async def test_the_dlq_command_says_when_the_broker_is_unreachable() -> None:
    closed_port = "amqp://guest:s3cret@127.0.0.1:1/"
    code, _, err = await wxkf("dlq", "list", "q", env={"WXKF_BUS_URL": closed_port})
    assert code == 1
    assert "cannot connect to amqp://guest:***@127.0.0.1:1/" in err
    assert "s3cret" not in err


async def core_dead_letters(amqp: AmqpHarness, count: int) -> None:
    """``count`` dead letters in the router's dead-letter queue (and no others: the tests of
    this module share a vhost), as the broker puts them."""
    bus = await amqp.bus()
    await bus.declare(CORE_QUEUES)
    await bus.drop_dead_letters(ROUTER_EVENTS.name)
    for i in range(count):
        await amqp.publish_raw(DEAD, ROUTER_EVENTS.name, encode(text(f"dead{i}")))


async def test_dlq_list_without_a_queue_shows_every_queue_and_its_depth(
    amqp: AmqpHarness,
) -> None:
    await core_dead_letters(amqp, 2)
    code, out, err = await wxkf("dlq", "list", env={"WXKF_BUS_URL": amqp.url})
    assert code == 0, err
    lines = out.splitlines()
    depths = dict(line.rsplit("  ", 1) for line in lines[:4])
    assert {k.strip(): v.strip() for k, v in depths.items()} == {
        "wxkf.router.events": "2",
        "wxkf.sender.commands": "0",
        "wxkf.sender.windows": "0",
        "wxkf.media.archive": "not declared",
    }
    assert lines[4].startswith("2 dead letter(s) in 1 queue(s)")
    assert err == ""  # the bus's own lines (bus.connected, bus.closed) stay out


async def test_dlq_drop_asks_then_deletes(amqp: AmqpHarness) -> None:
    from argparse import Namespace

    from libs.common.bus.admin import drop_main

    await core_dead_letters(amqp, 3)
    args = Namespace(queue=ROUTER_EVENTS.name, all=False, yes=False)
    asked: list[str] = []
    os.environ["WXKF_BUS_URL"] = amqp.url
    try:
        assert await drop_main(args, ask=lambda q: asked.append(q) or "no") == 1
        bus = await amqp.bus()
        assert await bus.dead_letter_count(ROUTER_EVENTS.name) == 3  # nothing dropped
        assert asked == [f"drop 3 dead letter(s) (3 of {ROUTER_EVENTS.name}) for good? type yes: "]
    finally:
        del os.environ["WXKF_BUS_URL"]
    code, out, err = await wxkf("dlq", "drop", "--all", "--yes", env={"WXKF_BUS_URL": amqp.url})
    assert code == 0, err
    assert out.splitlines() == [f"dropped 3 dead letter(s) of {ROUTER_EVENTS.name}"]
    assert await bus.dead_letter_count(ROUTER_EVENTS.name) == 0


async def test_dlq_reads_the_local_broker_when_no_url_is_set() -> None:
    code, _, err = await wxkf("dlq", "list", env={}, unset=("WXKF_BUS_URL", "WXKF_BUS_URL_FILE"))
    local = "amqp://guest:***@127.0.0.1:5672/"
    assert f"WXKF_BUS_URL is not set; reading the local broker {local}" in err
    # Where the tests run on a broker of their own the local one may not answer: then the
    # command has tried it, and says so.
    assert code == 0 or f"from {local}" in err or f"connect to {local}" in err, err


async def test_a_bounded_queue_keeps_the_newest_and_dead_letters_the_oldest(
    harness: Harness, ns: str
) -> None:
    bus = await harness.bus()
    spec = work_spec(ns, max_length=3)
    await bus.declare([spec])
    for i in range(5):  # nobody consumes: an extension that is stopped
        await bus.publish(text(f"n{i}"), routing_key=f"{ns}.msg.text")
    await wait_depth(harness, spec.name, 3)
    dropped = await eventually(
        lambda: bus.dead_letters(spec.name), lambda ls: len(ls) == 2, what="dropped ones"
    )
    assert [letter.reason for letter in dropped] == ["maxlen", "maxlen"]
    assert said(dropped) == ["n0", "n1"]
    for i in range(5, 9):
        await bus.publish(text(f"n{i}"), routing_key=f"{ns}.msg.text")
    # The dead-letter queue is bounded too: it keeps the newest three.
    await eventually(
        lambda: bus.dead_letters(spec.name),
        lambda ls: said(ls) == ["n3", "n4", "n5"],
        what="the newest dead letters",
    )
    await wait_depth(harness, spec.name, 3)


def said(letters: list[DeadLetter]) -> list[str]:
    messages = [decode(letter.body) for letter in letters]
    return [m.content for m in messages if isinstance(m, TextReceived)]
