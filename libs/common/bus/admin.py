"""``wxkf dlq list|replay|drop``: the dead letters of the work queues, without AMQP code.

All read the broker from ``WXKF_BUS_URL`` (or the file ``WXKF_BUS_URL_FILE`` names, as in a
pod); when neither is set, from the local broker ``wxkf up`` uses. The output is the dead
letters: the bus's own log lines are kept out of it (only warnings, on stderr).

* ``list`` without a queue: every wxkf work queue with the number of its dead letters. With
  one: a line per dead letter (routing key, reason, attempts, the start of the body), left in
  place.
* ``replay QUEUE``: sends them back to their work queue alone, with a fresh attempt count.
* ``drop QUEUE`` or ``drop --all``: deletes them, after a confirmation (``--yes`` skips it).

An extension's queues are not known here: name them (``wxkf dlq list wxkf.ext.history``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import msgspec

from libs.common.bus import Bus, BusError, DeadLetter, connect
from libs.common.bus.amqp import safe_url
from libs.common.observability.logging import configure
from libs.common.settings import LOCAL_BUS_URL, Secret, SettingsError, env_name, load
from libs.common.topology import ALL_QUEUES

PREVIEW_CHARS = 120
USAGE_ERROR = 2
BUS_ERROR = 1
NOT_DONE = 1


async def list_main(args: argparse.Namespace) -> int:
    limit = args.limit
    if limit is None or limit < 1:
        return _fail(f"--limit must be 1 or more, not {limit}", USAGE_ERROR)
    bus = await _open()
    if isinstance(bus, int):
        return bus
    try:
        if args.queue is None:
            return await _overview(bus)
        letters = await bus.dead_letters(args.queue, limit=limit)
    except BusError as exc:
        return _fail(str(exc), BUS_ERROR)
    finally:
        await bus.close()
    for letter in letters:
        print(describe(letter))
    print(f"{len(letters)} dead letter(s) shown from {args.queue}.dlq (left in place)")
    return 0


async def _overview(bus: Bus) -> int:
    depths = await _depths(bus)
    width = max(len(spec.name) for spec in ALL_QUEUES)
    for spec in ALL_QUEUES:
        depth = depths.get(spec.name)
        shown = "not declared" if depth is None else str(depth)
        print(f"{spec.name:<{width}}  {shown}")
    total = sum(d for d in depths.values() if d)
    holding = sum(1 for d in depths.values() if d)
    if total:
        print(
            f"{total} dead letter(s) in {holding} queue(s): `wxkf dlq list QUEUE` shows them, "
            "`wxkf dlq replay QUEUE` sends them back, `wxkf dlq drop QUEUE` deletes them"
        )
    else:
        print("no dead letters in wxkf's queues (an extension's: wxkf dlq list QUEUE)")
    return 0


async def _depths(bus: Bus) -> dict[str, int | None]:
    """Dead letters per wxkf work queue; None where the queue was never declared."""
    depths: dict[str, int | None] = {}
    for spec in ALL_QUEUES:
        try:
            depths[spec.name] = await bus.dead_letter_count(spec.name)
        except BusError as exc:
            if "no dead-letter queue" not in str(exc):
                raise
            depths[spec.name] = None
    return depths


async def replay_main(args: argparse.Namespace) -> int:
    limit = args.limit
    if limit is not None and limit < 1:
        return _fail(f"--limit must be 1 or more, not {limit}", USAGE_ERROR)
    bus = await _open()
    if isinstance(bus, int):
        return bus
    try:
        moved = await bus.replay_dead_letters(args.queue, limit=limit)
    except BusError as exc:
        return _fail(str(exc), BUS_ERROR)
    finally:
        await bus.close()
    print(f"replayed {moved} dead letter(s) to {args.queue}")
    return 0


async def drop_main(args: argparse.Namespace, *, ask: Callable[[str], str] | None = None) -> int:
    """``ask`` puts the question (default: on the terminal, which must be one)."""
    if (args.queue is None) == (not args.all):
        return _fail("name one queue, or give --all (every wxkf work queue)", USAGE_ERROR)
    if not args.yes and ask is None and not sys.stdin.isatty():
        return _fail("nothing dropped: confirm with --yes when not at a terminal", USAGE_ERROR)
    ask = ask or input
    bus = await _open()
    if isinstance(bus, int):
        return bus
    try:
        if args.all:
            found = await _depths(bus)
            counts = {name: n for name, n in found.items() if n}
        else:
            counts = {args.queue: await bus.dead_letter_count(args.queue)}
        total = sum(counts.values())
        if not total:
            print("no dead letters to drop")
            return 0
        where = ", ".join(f"{n} of {name}" for name, n in counts.items())
        if not args.yes:
            answer = ask(f"drop {total} dead letter(s) ({where}) for good? type yes: ")
            if answer.strip().lower() != "yes":
                print("nothing dropped", file=sys.stderr)
                return NOT_DONE
        for name in counts:
            dropped = await bus.drop_dead_letters(name)
            print(f"dropped {dropped} dead letter(s) of {name}")
    except BusError as exc:
        return _fail(str(exc), BUS_ERROR)
    except EOFError:
        return _fail("nothing dropped: no answer", NOT_DONE)
    finally:
        await bus.close()
    return 0


def describe(letter: DeadLetter) -> str:
    """One line: routing key, reason, attempts and the start of the body, tab-separated."""
    text = letter.body.decode("utf-8", "replace")
    preview = text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")
    # One line per letter: control characters (newlines, tabs) shown escaped.
    preview = "".join(c if c.isprintable() else repr(c)[1:-1] for c in preview)
    return f"{letter.routing_key}\t{letter.reason}\tattempts={letter.attempts}\t{preview}"


class _Target(msgspec.Struct, frozen=True, kw_only=True):
    # Only the broker: the command runs in any service's pod, with that pod's variables.
    bus_url: Secret | None = None


async def _open() -> Bus | int:
    # The command's output is the dead letters; the bus's own lines would only crowd it.
    configure("wxkf-dlq", fmt="console", level="warning", stream=sys.stderr)
    var = env_name("bus_url")
    try:
        url = load(_Target).bus_url  # WXKF_BUS_URL, or the file WXKF_BUS_URL_FILE names
    except SettingsError as exc:
        return _fail(str(exc), USAGE_ERROR)
    if url is None:
        url = Secret(LOCAL_BUS_URL)
        print(
            f"wxkf dlq: {var} is not set; reading the local broker {safe_url(url)} "
            "(as wxkf up does)",
            file=sys.stderr,
        )
    if not url:
        return _fail(
            f"{var} (or {var}_FILE) is empty: it names the broker whose dead letters to read",
            USAGE_ERROR,
        )
    if url.startswith("memory://"):
        return _fail(
            f"{var} is memory://: its dead letters live inside the process that runs the "
            "services; point it at the RabbitMQ they use (amqp://...)",
            USAGE_ERROR,
        )
    try:
        return await connect(url)
    except (BusError, ValueError) as exc:
        return _fail(str(exc), BUS_ERROR if isinstance(exc, BusError) else USAGE_ERROR)


def _fail(message: str, code: int) -> int:
    print(f"wxkf dlq: {message}", file=sys.stderr)
    return code
