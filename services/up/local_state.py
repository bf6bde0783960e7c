"""What ``wxkf up`` keeps between runs, and how ``wxkf up --fresh`` starts clean.

A run keeps its state, as a deployment that restarts does: Redis (reply windows, sessions,
the access token, media ids, dedupe keys), the broker's queues (messages waiting, retries,
dead letters) and the simulated WeChat's memory (``simulator.json``: the tokens it issued,
the windows it knows open, what each user received, temporary media; saved when ``wxkf up``
stops). So a restarted system finds WeChat as it left it, and a dead letter replayed after a
restart meets the window it was refused in.

``--fresh`` forgets all three: wxkf's keys in the store's database (those under its prefix,
nothing else), the messages of wxkf's work queues with their retries and dead letters (an
extension's own queues are left alone), and the simulator's file.
"""

from __future__ import annotations

import contextlib

import msgspec

from libs.common import bus as bus_lib
from libs.common import store as store_lib
from services.shipped_images import ASSETS
from services.up.plan import Layout, Plan


class Forgotten(msgspec.Struct, frozen=True, kw_only=True):
    keys: int
    """Removed from the store."""
    messages: int
    """Removed from wxkf's queues (waiting, retrying or dead-lettered)."""
    simulator: bool
    """Whether the simulator had a saved state."""

    def line(self) -> str:
        sim = "the simulator's saved state" if self.simulator else "no simulator state to remove"
        return (
            f"wxkf up --fresh: removed {self.keys} key(s) from the store, {self.messages} "
            f"message(s) from wxkf's queues, and {sim}"
        )


def prepare(layout: Layout) -> list[str]:
    """Make the run's directory; write each image the shipped rules name that is missing
    (one put there by hand is kept). Returns the names written."""
    layout.directory.mkdir(parents=True, exist_ok=True)
    layout.assets.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in ASSETS.items():
        path = layout.assets / name
        if not path.exists():
            path.write_bytes(draw(0))
            written.append(name)
    return written


async def start_clean(plan: Plan) -> Forgotten:
    """Forget what earlier runs left (see the module docstring). Raises ``BusError`` or
    ``StoreError`` when the broker or Redis cannot be reached."""
    env, layout = plan.env, plan.layout
    store = await store_lib.connect(env["WXKF_STORE_URL"])
    try:
        keys = await store.clear()
    finally:
        await store.close()
    bus = await bus_lib.connect(env["WXKF_BUS_URL"])
    try:
        messages = 0
        for spec in plan.queues:
            messages += await bus.purge(spec)
    finally:
        await bus.close()
    had = layout.simulator_state.exists()
    with contextlib.suppress(FileNotFoundError):
        layout.simulator_state.unlink()
    return Forgotten(keys=keys, messages=messages, simulator=had)
