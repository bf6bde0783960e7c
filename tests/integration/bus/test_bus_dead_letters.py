"""Looking at and replaying dead letters, on both backends, and the ``wxkf dlq`` command on
RabbitMQ."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from libs.common.bus import BusError
from libs.common.bus.outcomes import Reject
from libs.common.schemas import AnyMessage, TextReceived, decode
from tests.integration.bus.harness import (
    AmqpHarness,
    Delivery,
    Harness,
    Recorder,
    text,
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
    with pytest.raises(BusError, match=f"{ns}.nothing.dlq"):
        await bus.dead_letters(f"{ns}.nothing")
    with pytest.raises(BusError, match=f"{ns}.nothing.dlq"):
        await bus.replay_dead_letters(f"{ns}.nothing")


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
        ({"WXKF_BUS_URL": ""}, ("list", "q"), "WXKF_BUS_URL (or WXKF_BUS_URL_FILE) is required"),
        ({"WXKF_BUS_URL_FILE": "/nonexistent/bus-url"}, ("list", "q"), "cannot read"),
        ({"WXKF_BUS_URL": "memory://"}, ("replay", "q"), "memory://"),
        ({"WXKF_BUS_URL": "kafka://x"}, ("list", "q"), "unsupported bus URL"),
        (
            {"WXKF_BUS_URL": "amqp://guest:guest@127.0.0.1:5672/"},
            ("list", "q", "--limit", "0"),
            "--limit",
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
