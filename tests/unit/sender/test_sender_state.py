"""The sender's small pieces of shared state over the memory store: windows from events,
the order of a cause, the ledger of commands, and the typing rules."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from libs.common.schemas import (
    DecisionMade,
    ImageReceived,
    SendText,
    SessionEntered,
    TextReceived,
    encode,
)
from libs.common.settings import load
from libs.common.store.memory import MemoryStore
from services.sender import ledger, order, typing_rules, windows
from services.sender.settings import SenderSettings
from services.sender.window_rules import Grant

APPID = "wx0123456789abcdef"
SETTINGS = load(SenderSettings, {"WXKF_APPID": APPID, "WXKF_APP_SECRET": "x" * 32})


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(prefix=f"t{uuid.uuid4().hex[:6]}:")


def envelope() -> dict[str, object]:
    return {"appid": APPID, "openid": "oUser", "correlation_id": "c"}


# --- windows -------------------------------------------------------------------------------------


def test_a_user_message_grants_five_for_48_hours_from_its_create_time() -> None:
    event = TextReceived(**envelope(), to_user="gh", create_time=1000, msg_id=1, content="hi")
    assert windows.grant_for(event, SETTINGS) == Grant(kind="message", count=5, until=1000 + 172800)
    image = ImageReceived(**envelope(), to_user="gh", create_time=5, msg_id=2, media_id="m")
    assert windows.grant_for(image, SETTINGS) == Grant(kind="message", count=5, until=5 + 172800)


def test_entering_the_chat_grants_two_for_a_minute() -> None:
    event = SessionEntered(**envelope(), to_user="gh", create_time=1000)
    assert windows.grant_for(event, SETTINGS) == Grant(kind="enter", count=2, until=1060)


def test_other_events_grant_nothing() -> None:
    decision = DecisionMade(**envelope(), event_id="e", rule="r", action="reply")
    assert windows.grant_for(decision, SETTINGS) is None


# --- order -------------------------------------------------------------------------------------


def text(seq: int, total: int = 3, cause: str = "cause-1") -> SendText:
    return SendText(**envelope(), cause_id=cause, seq=seq, total=total, content=str(seq))


async def test_the_first_of_a_cause_never_waits(store: MemoryStore) -> None:
    assert await order.waiting_for(store, text(0)) == (False, None)
    assert await order.waiting_for(store, text(2, cause="")) == (False, None)


async def test_a_successor_waits_until_its_predecessor_is_done(store: MemoryStore) -> None:
    assert await order.waiting_for(store, text(1)) == (True, None)
    await order.mark_retrying(store, text(0), at=123.5, ttl_s=60)
    assert await order.waiting_for(store, text(1)) == (True, 123.5)
    await order.mark_done(store, text(0), ttl_s=60)
    assert await order.waiting_for(store, text(1)) == (False, None)
    assert await order.waiting_for(store, text(2)) == (True, None)


def test_only_commands_followed_within_their_cause_have_successors() -> None:
    assert order.has_successor(text(0))
    assert order.has_successor(text(1))
    assert not order.has_successor(text(2))
    assert not order.has_successor(text(0, total=1))
    assert not order.has_successor(text(0, cause=""))


async def test_the_last_of_a_cause_leaves_no_key(store: MemoryStore) -> None:
    await order.mark_done(store, text(2), ttl_s=60)
    assert await store.get(order.step_key("cause-1", 2)) is None


async def test_a_garbled_hint_still_waits(store: MemoryStore) -> None:
    await store.set(order.step_key("cause-1", 0), b"retry:soon", ttl_s=60)
    assert await order.waiting_for(store, text(1)) == (True, None)


# --- ledger ------------------------------------------------------------------------------------


async def test_the_ledger_keeps_the_outcome_fact_verbatim(store: MemoryStore) -> None:
    assert await ledger.read(store, "cmd-1") is None
    assert (await store.claim(ledger.inflight("cmd-1", at=10.0, ttl_s=60, owner="elsewhere"))).ok
    entry = await ledger.read(store, "cmd-1")
    assert entry is not None
    assert (entry.state, entry.at) == ("inflight", 10.0)
    fact = encode(text(0))
    await store.set_many([ledger.outcome("cmd-1", fact, at=11.0, ttl_s=60)])
    done = await ledger.read(store, "cmd-1")
    assert done is not None
    assert done.state == "done"
    assert msgspec.json.decode(bytes(done.fact)) == msgspec.json.decode(fact)
    await ledger.clear(store, "cmd-1")
    assert await ledger.read(store, "cmd-1") is None


async def test_only_one_delivery_may_begin_a_call(store: MemoryStore) -> None:
    assert (await store.claim(ledger.inflight("cmd-3", at=1.0, ttl_s=60, owner="elsewhere"))).ok
    other = await store.claim(ledger.inflight("cmd-3", at=2.0, ttl_s=60, owner="elsewhere"))
    assert other.known is not None
    entry = ledger.parse("cmd-3", other.known)
    assert (entry.state, entry.at) == ("inflight", 1.0)


async def test_an_outcome_without_a_call_never_overwrites_what_is_known(
    store: MemoryStore,
) -> None:
    sent = encode(text(0))
    await store.set_many([ledger.outcome("cmd-4", sent, at=1.0, ttl_s=60)])
    known = await ledger.settle_once(store, "cmd-4", b'{"other":1}', at=2.0, ttl_s=60)
    assert known is not None
    assert known.state == "done"
    assert bytes(known.fact) == sent
    assert await ledger.settle_once(store, "cmd-5", sent, at=2.0, ttl_s=60) is None


async def test_an_unreadable_ledger_entry_counts_as_an_abandoned_call(store: MemoryStore) -> None:
    await store.set(ledger.ledger_key("cmd-2"), b"{garbage", ttl_s=60)
    entry = await ledger.read(store, "cmd-2")
    assert entry is not None
    assert (entry.state, entry.at) == ("inflight", 0.0)


# --- typing ------------------------------------------------------------------------------------


async def test_typing_needs_a_recent_exchange(store: MemoryStore) -> None:
    args = {"exchange_s": 30.0}
    assert "no message exchanged" in str(
        await typing_rules.refusal(store, APPID, "oUser", now=100.0, **args)
    )
    await typing_rules.user_wrote(store, APPID, "oUser", at=80.0)
    assert await typing_rules.refusal(store, APPID, "oUser", now=100.0, **args) is None
    assert await typing_rules.refusal(store, APPID, "oUser", now=111.0, **args) is not None
    # Our reply is an exchange.
    await store.set_many([typing_rules.delivered(APPID, "oUser", at=105.0)])
    assert await typing_rules.refusal(store, APPID, "oUser", now=130.0, **args) is None


async def test_an_older_user_message_never_moves_the_exchange_back(store: MemoryStore) -> None:
    await typing_rules.user_wrote(store, APPID, "oUser", at=90.0)
    await typing_rules.user_wrote(store, APPID, "oUser", at=50.0)  # a late redelivery
    assert await typing_rules.refusal(store, APPID, "oUser", now=115.0, exchange_s=30) is None


async def test_no_typing_while_typing_and_a_delivery_ends_it(store: MemoryStore) -> None:
    await typing_rules.user_wrote(store, APPID, "oUser", at=100.0)
    await typing_rules.typing(store, APPID, "oUser", until=115.0)
    assert await typing_rules.refusal(store, APPID, "oUser", now=110.0, exchange_s=30) == (
        "already typing"
    )
    assert await typing_rules.refusal(store, APPID, "oUser", now=116.0, exchange_s=30) is None
    await typing_rules.typing(store, APPID, "oUser", until=200.0)
    await store.set_many([typing_rules.delivered(APPID, "oUser", at=117.0)])
    assert await typing_rules.refusal(store, APPID, "oUser", now=118.0, exchange_s=30) is None
    await typing_rules.typing(store, APPID, "oUser", until=200.0)
    await typing_rules.typing(store, APPID, "oUser", until=None)
    assert await typing_rules.refusal(store, APPID, "oUser", now=119.0, exchange_s=30) is None


async def test_an_unreadable_chat_value_is_a_fresh_start(store: MemoryStore) -> None:
    await store.set(typing_rules.chat_key(APPID, "oUser"), b"[1,2]", ttl_s=60)
    assert await typing_rules.read(store, APPID, "oUser") == typing_rules.Chat()
