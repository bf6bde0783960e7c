"""``wxkf dlq list QUEUE`` and ``wxkf dlq replay QUEUE``: a work queue's dead letters.

Both read the broker from ``WXKF_BUS_URL`` (or the file ``WXKF_BUS_URL_FILE`` names).
``list`` prints one line per dead letter (routing key, reason, attempts, the start of the
body) and leaves them in place; ``replay`` sends them
back to their work queue alone, with a fresh attempt count, and says how many it moved.
"""

from __future__ import annotations

import argparse
import sys

import msgspec
import structlog

from libs.common.bus import Bus, BusError, DeadLetter, connect
from libs.common.settings import Secret, SettingsError, env_name, load

PREVIEW_CHARS = 120
USAGE_ERROR = 2
BUS_ERROR = 1


async def list_main(args: argparse.Namespace) -> int:
    limit = args.limit
    if limit is None or limit < 1:
        return _fail(f"--limit must be 1 or more, not {limit}", USAGE_ERROR)
    bus = await _open()
    if isinstance(bus, int):
        return bus
    try:
        letters = await bus.dead_letters(args.queue, limit=limit)
    except BusError as exc:
        return _fail(str(exc), BUS_ERROR)
    finally:
        await bus.close()
    for letter in letters:
        print(describe(letter))
    print(f"{len(letters)} dead letter(s) shown from {args.queue}.dlq (left in place)")
    return 0


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


def describe(letter: DeadLetter) -> str:
    """One line: routing key, reason, attempts and the start of the body, tab-separated."""
    text = letter.body.decode("utf-8", "replace")
    preview = text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")
    # One line per letter: control characters (newlines, tabs) shown escaped.
    preview = "".join(c if c.isprintable() else repr(c)[1:-1] for c in preview)
    return f"{letter.routing_key}\t{letter.reason}\tattempts={letter.attempts}\t{preview}"


class _Target(msgspec.Struct, frozen=True, kw_only=True):
    # Only the broker: the command runs in any service's pod, with that pod's variables.
    bus_url: Secret = Secret("")


async def _open() -> Bus | int:
    var = env_name("bus_url")
    try:
        url = load(_Target).bus_url  # WXKF_BUS_URL, or the file WXKF_BUS_URL_FILE names
    except SettingsError as exc:
        return _fail(str(exc), USAGE_ERROR)
    if not url:
        return _fail(
            f"{var} (or {var}_FILE) is required: the broker whose dead letters to read",
            USAGE_ERROR,
        )
    if url.startswith("memory://"):
        return _fail(
            f"{var} is memory://: its dead letters live inside the process that runs the "
            "services; point it at the RabbitMQ they use (amqp://...)",
            USAGE_ERROR,
        )
    # The command's output is the dead letters; the bus's own log lines go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    try:
        return await connect(url)
    except (BusError, ValueError) as exc:
        return _fail(str(exc), BUS_ERROR if isinstance(exc, BusError) else USAGE_ERROR)


def _fail(message: str, code: int) -> int:
    print(f"wxkf dlq: {message}", file=sys.stderr)
    return code
