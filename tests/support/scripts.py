"""A small owner's script and claim step, in both forms, for the store's own tests: a counter
with a cap (``seats``), as a service would bring its rules (see libs/common/store/scripts.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from libs.common.store import Args, Cell, Script, Step

LUA = """
local S = {}
-- ARGV: how many to add. Returns the count after.
function S.add(key, argv)
    return redis.call('HINCRBY', key, 'n', argv[1])
end
-- A seat while fewer than args[1] are taken: true, taken; else false, 'full'.
function S.check(key, args)
    local n = tonumber(redis.call('HGET', key, 'n') or '0')
    if n >= args[1] then
        return false, 'full'
    end
    return true, n
end
function S.commit(key, n)
    redis.call('HSET', key, 'n', n + 1)
    return n + 1
end
return S
"""


@dataclass(slots=True)
class Seats:
    n: int = 0


def _add(cell: Cell[Seats], args: Args) -> int:
    seats = cell.get() or Seats()
    seats.n += int(args[0])
    cell.put(seats, ttl_s=None)
    return seats.n


def _check(cell: Cell[Seats], args: Args) -> tuple[bool, Any]:
    seats = cell.get()
    n = 0 if seats is None else seats.n
    if n >= int(args[0]):
        return False, "full"
    return True, n


def _commit(cell: Cell[Seats], n: int) -> int:
    seats = cell.get() or Seats()
    seats.n = n + 1
    cell.put(seats, ttl_s=None)
    return seats.n


def _read(reply: Any) -> int | str:
    return reply.decode() if isinstance(reply, bytes) else reply


ADD: Script[Seats, int | str] = Script(
    name="seats_add",
    lua=f"local S = (function()\n{LUA}\nend)()\nreturn S.add(KEYS[1], ARGV)",
    read=_read,
    state=Seats,
    memory=_add,
)
SEAT: Step[Seats, int | str] = Step(
    name="seats", lua=LUA, read=_read, state=Seats, check=_check, commit=_commit
)
"""A seat, taken by a claim while fewer than its argument are taken: the count after, or
``"full"``."""
