"""The command handler's edges that no WeChat call decides: what is not a command, what is
not ours, redeliveries, abandoned calls, an unreachable store, and the last attempt.

The bus is the in-memory twin and WeChat is never reached here: the client points at a closed
port, so a call that should not happen would fail the test loudly."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import aiohttp
import pytest

from libs.common.bus import Reject, Retry
from libs.common.bus.delivery import Delivery
from libs.common.bus.memory import MemoryBus
from libs.common.schemas import (
    AnyMessage,
    DecisionMade,
    Failed,
    Outcome,
    Rejected,
    SendText,
    SendTyping,
    SessionEntered,
    encode,
)
from libs.common.settings import load
from libs.common.store import Arg, Script, Store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from libs.common.topology import EVENTS, SENDER_COMMANDS, QueueSpec
from libs.common.wechat.api import ApiClient
from libs.common.wechat.token import AccessToken
from services.sender import handlers, ledger, window_rules, windows
from services.sender.handlers import Sender
from services.sender.settings import SenderSettings
from services.sender.window_rules import Grant

T = TypeVar("T")

APPID = "wx0123456789abcdef"


async def published(facts: list[Outcome]) -> list[Outcome]:
    """The facts, once the in-memory broker has handed them over (a polled deadline)."""
    deadline = asyncio.get_running_loop().time() + 10
    while not facts:
        assert asyncio.get_running_loop().time() < deadline, "no fact was published"
        await asyncio.sleep(0.01)
    return facts


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class World:
    def __init__(self, bus: MemoryBus, facts: list[Outcome], session: aiohttp.ClientSession):
        self.bus = bus
        self.facts = facts
        self.session = session
        self.wechat = f"http://127.0.0.1:{closed_port()}"

    def sender(self, store: Store | None = None, **overrides: Any) -> Sender:
        settings = load(
            SenderSettings,
            {},
            appid=APPID,
            app_secret="x" * 32,
            wechat_api_base=self.wechat,
            **{"window_grace_s": 0, "send_rate_per_s": 0, **overrides},
        )
        store = store or MemoryStore(prefix=f"t{uuid.uuid4().hex[:6]}:")
        api = ApiClient(self.session, base_url=self.wechat, timeout_s=1)
        return Sender(
            settings=settings,
            bus=self.bus,
            store=store,
            api=api,
            token=AccessToken(api, store, appid=APPID, secret=settings.app_secret),
            media=None,
            commands=SENDER_COMMANDS,
            clock=lambda: 1_700_000_000.0,
        )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    bus = MemoryBus.fresh()
    facts: list[Outcome] = []
    spec = QueueSpec(name="test.facts", exchange=EVENTS, bindings=("outbound.#",))
    await bus.declare([spec])

    async def collect(msg: AnyMessage, delivery: Any) -> None:
        assert isinstance(msg, Outcome)
        facts.append(msg)

    await bus.consume(spec, collect)
    async with aiohttp.ClientSession() as session:
        yield World(bus, facts, session)
    await bus.close()


def delivery(attempt: int = 1) -> Delivery:
    async def replier(*_: Any) -> None:
        raise AssertionError("commands are not requests")

    return Delivery(
        attempt=attempt,
        max_attempts=SENDER_COMMANDS.max_attempts,
        reply_to=None,
        redelivered=False,
        headers={},
        message_id=None,
        correlation_id=None,
        replier=replier,
    )


def text(appid: str = APPID, **fields: Any) -> SendText:
    return SendText(appid=appid, openid="oUser", correlation_id="c", content="hi", **fields)


async def test_a_message_that_is_not_a_command_is_dead_lettered(world: World) -> None:
    entered = SessionEntered(
        appid=APPID, openid="o", correlation_id="c", to_user="gh", create_time=1
    )
    with pytest.raises(Reject, match="no handler for SessionEntered"):
        await handlers.commands(world.sender())(entered, delivery())


async def test_a_command_for_another_app_fails_without_a_call(world: World) -> None:
    cmd = text(appid="wxSOMEONEELSE")
    await handlers.commands(world.sender())(cmd, delivery())
    [fact] = await published(world.facts)
    assert isinstance(fact, Failed)
    assert "wxSOMEONEELSE" in fact.errmsg


async def test_a_settled_command_repeats_its_fact_and_sends_nothing(world: World) -> None:
    sender = world.sender()
    cmd = text()
    earlier = Rejected(
        appid=APPID,
        openid="oUser",
        correlation_id="c",
        command_id=cmd.id,
        msgtype="text",
        reason="no_window",
    )
    await sender.store.set_many([ledger.outcome(cmd.id, encode(earlier), at=1.0, ttl_s=60)])
    await handlers.commands(sender)(cmd, delivery(attempt=2))
    assert await published(world.facts) == [earlier]


async def test_a_settled_command_takes_no_window_slot_and_no_rate_token(world: World) -> None:
    sender = world.sender(send_rate_per_s=1.0, send_rate_burst=1)
    cmd = text()
    window = "sender:window:wx0123456789abcdef:oUser"
    await windows.grant(
        sender.store,
        window,
        Grant(kind="message", count=1, until=sender.clock() + 60),
        now=sender.clock(),
    )
    earlier = Rejected(
        appid=APPID,
        openid="oUser",
        correlation_id="c",
        command_id=cmd.id,
        msgtype="text",
        reason="no_window",
    )
    await sender.store.set_many([ledger.outcome(cmd.id, encode(earlier), at=1.0, ttl_s=60)])
    await handlers.commands(sender)(cmd, delivery(attempt=2))
    assert await published(world.facts) == [earlier]
    rate_key = f"sender:rate:{APPID}"
    assert await sender.store.rate_acquire(rate_key, rate=1.0, burst=1, now=sender.wall()) == 0
    take = await windows.take(sender.store, window, now=sender.clock())
    assert (take.ok, take.remaining) == (True, 0)


async def test_a_command_in_flight_elsewhere_comes_back_later(world: World) -> None:
    sender = world.sender(inflight_stale_s=60)
    cmd = text()
    await sender.store.claim(
        ledger.inflight(cmd.id, at=sender.wall() - 10, ttl_s=60, owner="elsewhere")
    )
    with pytest.raises(Retry) as info:
        await handlers.commands(sender)(cmd, delivery())
    assert info.value.delay_s is not None
    assert 0 < info.value.delay_s <= 50


async def test_an_abandoned_call_is_ambiguous_and_given_up_by_default(world: World) -> None:
    sender = world.sender(inflight_stale_s=5)
    cmd = text()
    await sender.store.claim(
        ledger.inflight(cmd.id, at=sender.wall() - 60, ttl_s=60, owner="elsewhere")
    )
    await handlers.commands(sender)(cmd, delivery(attempt=2))
    [fact] = await published(world.facts)
    assert isinstance(fact, Failed)
    assert fact.errmsg.startswith("ambiguous: abandoned mid-call")


async def test_an_abandoned_call_is_tried_again_when_the_policy_says_so(world: World) -> None:
    sender = world.sender(inflight_stale_s=5, ambiguous_retry="text")
    cmd = text()
    await sender.store.claim(
        ledger.inflight(cmd.id, at=sender.wall() - 60, ttl_s=60, owner="elsewhere")
    )
    with pytest.raises(Retry, match="ambiguous"):
        await handlers.commands(sender)(cmd, delivery(attempt=2))
    assert await ledger.read(sender.store, cmd.id) is None  # the next try sends it
    assert world.facts == []


async def test_an_unreachable_store_is_retried_then_reported(world: World) -> None:
    store = await RedisStore.connect(f"redis://127.0.0.1:{closed_port()}/0", timeout_s=0.5)
    try:
        sender = world.sender(store=store)
        with pytest.raises(Retry):
            await handlers.commands(sender)(text(), delivery())
        with pytest.raises(Reject, match="attempts exhausted"):
            await handlers.commands(sender)(text(), delivery(SENDER_COMMANDS.max_attempts))
    finally:
        await store.close()
    # The failure is reported even though the store is down (the bus is not).
    [fact] = await published(world.facts)
    assert isinstance(fact, Failed)
    assert "redis" in fact.errmsg


async def test_on_its_last_attempt_a_waiting_command_goes_ahead(world: World) -> None:
    sender = world.sender()
    second = text(cause_id="cause", seq=1, total=2)
    with pytest.raises(Retry, match="waiting for seq 0"):
        await handlers.commands(sender)(second, delivery())
    # Its predecessor never settled: on the last attempt it is not held back any more (here
    # it finds no window, which settles it without a call).
    await handlers.commands(sender)(second, delivery(SENDER_COMMANDS.max_attempts))
    [fact] = await published(world.facts)
    assert isinstance(fact, Rejected)
    assert fact.reason == "no_window"


async def test_window_events_of_another_app_or_kind_open_nothing(world: World) -> None:
    sender = world.sender()
    handle = handlers.window_events(sender)
    foreign = SessionEntered(
        appid="wxSOMEONEELSE", openid="oUser", correlation_id="c", to_user="gh", create_time=1
    )
    await handle(foreign, delivery())  # acked: another app's event is none of ours
    # A kind the windows queue is not bound to never reaches it; if one did, it would be
    # dead-lettered by name, not silently acked.
    decision = DecisionMade(
        appid=APPID, openid="oUser", correlation_id="c", event_id="e", rule="r", action="reply"
    )
    with pytest.raises(Reject, match="no handler for DecisionMade"):
        await handle(decision, delivery())
    take = await windows.take(sender.store, "sender:window:wx0123456789abcdef:oUser", now=0.0)
    assert take.reason == "no_window"


class CountingStore(MemoryStore):
    """The memory store, counting the window's slot moves."""

    def __init__(self) -> None:
        super().__init__(prefix=f"t{uuid.uuid4().hex[:6]}:")
        self.moves = 0

    async def run(self, script: Script[Any, T], key: str, *args: Arg) -> T:
        if script is window_rules.RELEASE or (script is window_rules.TAKE and args[-1] != "0"):
            self.moves += 1
        return await super().run(script, key, *args)


async def test_typing_checks_the_window_without_holding_its_last_slot(world: World) -> None:
    # Taking a slot and giving it back would refuse, in between, a send that needs it.
    store = CountingStore()
    sender = world.sender(store)
    typing = SendTyping(appid=APPID, openid="oUser", correlation_id="c")
    key = windows.window_key(APPID, "oUser")
    assert await handlers._window_has_room(sender, typing) == "reply window: no_window"
    await windows.grant(store, key, Grant(kind="message", count=1, until=2e9), now=1.7e9)
    assert await handlers._window_has_room(sender, typing) is None
    assert store.moves == 0
    assert (await windows.take(store, key, now=1.7e9)).remaining == 0
    assert await handlers._window_has_room(sender, typing) == "reply window: quota_exhausted"
