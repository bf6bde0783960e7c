"""The order of the commands of one cause (``cause_id``, ``seq`` 0-based, ``total``).

Command ``seq`` n is sent only once n-1 is done; sent, rejected or failed all count as done,
so one refused message never holds back the rest. The commands of one decision are
published back to back, so a successor usually arrives while its predecessor is being sent
by the same process: it then waits for that send to finish (:class:`InFlight`), which costs
nothing more than the send itself. Otherwise (the predecessor is on another replica, or
waits for a retry) the successor is retried later through the bus; a predecessor that is
being called or waits for a retry says until when, so its successor comes back no sooner
instead of spending attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

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


_NOTHING = contextlib.nullcontext()


class InFlight:
    """The steps this process is handling now, so a successor can wait for one in place."""

    def __init__(self) -> None:
        self._steps: dict[str, asyncio.Event] = {}

    def running(self, cmd: SendCommand) -> contextlib.AbstractContextManager[None]:
        """While the body runs, a successor of ``cmd`` in this process waits for it."""
        return self._running(cmd) if has_successor(cmd) else _NOTHING

    @contextlib.contextmanager
    def _running(self, cmd: SendCommand) -> Iterator[None]:
        key = step_key(cmd.cause_id, cmd.seq)
        finished = self._steps[key] = asyncio.Event()
        try:
            yield
        finally:
            finished.set()
            if self._steps.get(key) is finished:
                del self._steps[key]

    async def predecessor(self, cmd: SendCommand, *, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) for ``cmd``'s predecessor if this process is handling
        it; True when there was one to wait for. Whether it is *done* is the store's to say:
        it may have ended in a retry."""
        if not ordered(cmd):
            return False
        finished = self._steps.get(step_key(cmd.cause_id, cmd.seq - 1))
        if finished is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await finished.wait()
        return True
