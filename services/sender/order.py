"""The order of the commands of one cause (``cause_id``, ``seq`` 0-based, ``total``).

Command ``seq`` n is sent only once n-1 is done; sent, rejected or failed all count as done,
so one refused message never holds back the rest. A command whose predecessor is not done
is retried shortly later through the bus. A predecessor that is being called or waits for a
retry says until when, so its successor comes back no sooner instead of spending attempts.
"""

from __future__ import annotations

from libs.common.schemas import SendCommand
from libs.common.store import Store, Write

_DONE = b"done"
_RETRY = b"retry:"


def step_key(cause_id: str, seq: int) -> str:
    return f"sender:order:{cause_id}:{seq}"


def ordered(cmd: SendCommand) -> bool:
    return bool(cmd.cause_id) and cmd.seq > 0


def has_successor(cmd: SendCommand) -> bool:
    return bool(cmd.cause_id) and cmd.seq < cmd.total - 1


async def waiting_for(store: Store, cmd: SendCommand) -> tuple[bool, float | None]:
    """``(True, retry_at)`` while the predecessor is not done; ``retry_at`` (unix seconds) is
    when the predecessor will be tried again, if it said so."""
    if not ordered(cmd):
        return False, None
    raw = await store.get(step_key(cmd.cause_id, cmd.seq - 1))
    if raw == _DONE:
        return False, None
    if raw is not None and raw.startswith(_RETRY):
        try:
            return True, float(raw[len(_RETRY) :])
        except ValueError:
            return True, None
    return True, None


def done(cmd: SendCommand, *, ttl_s: float) -> list[Write]:
    """The write that frees the command's successor (none when it has no successor)."""
    if not has_successor(cmd):
        return []
    return [Write(key=step_key(cmd.cause_id, cmd.seq), value=_DONE, ttl_s=ttl_s)]


def retrying(cmd: SendCommand, *, at: float, ttl_s: float) -> list[Write]:
    """The write that tells the successor to wait until ``at`` (none without a successor)."""
    if not has_successor(cmd):
        return []
    value = _RETRY + repr(at).encode()
    return [Write(key=step_key(cmd.cause_id, cmd.seq), value=value, ttl_s=ttl_s)]


async def mark_done(store: Store, cmd: SendCommand, *, ttl_s: float) -> None:
    await store.set_many(done(cmd, ttl_s=ttl_s))


async def mark_retrying(store: Store, cmd: SendCommand, *, at: float, ttl_s: float) -> None:
    """The command will be tried (again) at ``at`` at the earliest: its successor waits."""
    await store.set_many(retrying(cmd, at=at, ttl_s=ttl_s))
