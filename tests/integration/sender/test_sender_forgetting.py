"""When the store fails the sender at the worst moments, and when it forgets: never twice.

A claim whose answer is lost (the store ran it, then the connection broke) leaves a ledger
mark nobody will clear: the next attempt, told by its note that its predecessor never called
WeChat, takes it over and sends. A send WeChat took whose outcome the store does not take is
reported and acked, never sent again. A copy of a command that the store may have forgotten
(the store's memory began anew after the command was made) is reported, not sent twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from libs.common.schemas import Failed, SendText, Sent
from libs.common.store import Claim, Store, StoreError, Write
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from services.sender import ledger
from services.sender.app import create_app
from tests.integration.sender.conftest import Rig
from tests.support.metrics import sample
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


class Faulty:
    """The rig's store, failing one chosen call the way a broken connection does."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.lose_claim_answer = False
        self.refuse_set_many = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def claim(self, mark: Write, **kwargs: Any) -> Claim:
        claim = await self.inner.claim(mark, **kwargs)
        if self.lose_claim_answer and mark.key.startswith("sender:command:"):
            self.lose_claim_answer = False
            # It ran; only its answer is lost with the connection.
            raise StoreError("redis claim failed: Timeout reading from socket")
        return claim

    async def set_many(self, writes: Sequence[Write]) -> None:
        if self.refuse_set_many and any(w.key.startswith("sender:command:") for w in writes):
            self.refuse_set_many -= 1
            raise StoreError("redis set_many failed: Connection reset by peer")
        await self.inner.set_many(writes)


async def start(rig: Rig, store: Faulty, **overrides: Any) -> Any:
    app = create_app(rig.settings(**overrides), bus=rig.bus, store=store, clock=rig.sim.clock.now)  # type: ignore[arg-type]
    server = TestServer(app)
    await server.start_server()
    rig.servers.append(server)
    return app


async def test_a_mark_left_by_a_claim_whose_answer_was_lost_is_taken_over(rig: Rig) -> None:
    store = Faulty(rig.store)
    await start(rig, store)
    user = rig.openid()
    await rig.user_message(user)
    store.lose_claim_answer = True
    taken = sample("wxkf_sender_retries_total", reason="mark_taken_over")
    [cmd] = rig.texts(user, ["once"])
    await rig.send(cmd)
    outcomes = await rig.settled([cmd])
    sent = outcomes[cmd.id]
    # Sent by the second attempt, at once: not left to age into an ambiguous failure.
    assert isinstance(sent, Sent)
    assert sent.attempts == 2
    assert rig.received(user) == ["once"]
    assert sample("wxkf_sender_retries_total", reason="mark_taken_over") == taken + 1


async def test_a_send_whose_outcome_the_store_refused_is_reported_and_never_resent(
    rig: Rig,
) -> None:
    store = Faulty(rig.store)
    await start(rig, store)
    user = rig.openid()
    await rig.user_message(user)
    store.refuse_set_many = 1
    unrecorded = sample("wxkf_sender_outcomes_unrecorded_total")
    [cmd] = rig.texts(user, ["just once"])
    await rig.send(cmd)
    outcomes = await rig.settled([cmd])
    assert isinstance(outcomes[cmd.id], Sent)
    assert outcomes[cmd.id].attempts == 1
    assert sample("wxkf_sender_outcomes_unrecorded_total") == unrecorded + 1
    # The outcome reaches the ledger once the store takes it.
    entry = await eventually(
        lambda: ledger.read(rig.store, cmd.id), lambda e: e is not None and e.state == "done"
    )
    assert entry is not None
    assert rig.received(user) == ["just once"]
    assert [type(f) for f in rig.outcomes(user)] == [Sent]


async def test_a_copy_the_store_may_have_forgotten_is_reported_not_sent_twice(
    rig: Rig, tmp_path: Path
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(rig.store, MemoryStore):
            inner: Store = rig.store
            lose = rig.store.lose_everything
        else:
            # A Redis of the test's own, restarted without its data: a real loss.
            server = stack.enter_context(RedisServer.started(tmp_path))
            inner = await RedisStore.connect(server.url(), prefix="t:")
            stack.push_async_callback(inner.close)
            lose = server.restart_empty
        await start(rig, Faulty(inner))
        await _a_forgotten_copy_is_reported(rig, lose)


async def _a_forgotten_copy_is_reported(rig: Rig, lose: Callable[[], None]) -> None:
    user = rig.openid()
    await rig.user_message(user)
    made = int(time.time()) - 60
    cmd = SendText(
        appid=rig.texts(user, ["x"])[0].appid,
        openid=user,
        correlation_id="c-forgotten",
        cause_id="e-forgotten",
        content="answered before the loss",
        opens="message",
        opened_at=made,
    )
    await rig.send(cmd)
    await rig.settled([cmd])
    # The store forgets everything: the ledger, the window; its memory begins anew.
    lose()
    forgotten = sample("wxkf_sender_ledger_forgotten_total")
    await rig.bus.publish(cmd, repeat=True)  # the router redid its plan
    await eventually(lambda: len(rig.outcomes(user)), lambda n: n == 2, what="a second fact")
    first, second = rig.outcomes(user)
    assert isinstance(first, Sent)
    assert isinstance(second, Failed)
    assert second.errmsg.startswith("ambiguous: the store lost its memory")
    assert rig.received(user) == ["answered before the loss"]
    assert sample("wxkf_sender_ledger_forgotten_total") == forgotten + 1
    # A fresh copy in the same store is trusted: the loss says nothing about it.
    await rig.user_message(user)  # the window went with the rest
    [new] = rig.texts(user, ["after the loss"])
    await rig.send(new)
    assert isinstance((await rig.settled([new]))[new.id], Sent)
