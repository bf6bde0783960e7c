"""The event handler in-process on the memory twins: what it does when things go wrong."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY
from router_helpers import enter, text, until

from libs.common.bus import Delivery, Reject, Retry
from libs.common.bus.delivery import Delivery as BusDelivery
from libs.common.bus.memory import MemoryBus
from libs.common.bus.outcomes import BusError
from libs.common.schemas import AnyMessage, SendCommand, SendText, decode_reply, now_ms
from libs.common.store import Claim, Store, StoreError, Write
from libs.common.store.memory import MemoryStore
from libs.common.topology import COMMANDS, QueueSpec
from services.router import plans, sessions
from services.router.handlers import Router, handle_event
from services.router.rules import Rules

RULES = """\
rules:
  - {name: agent, match: {text: {contains: 人工}}, reply: 转接中, transfer: true}
  - {name: hello, match: {type: event}, reply: 你好}
fallback: {reply: 收到}
"""


class FlakyStore:
    """The memory store, failing on demand like a Redis that went away."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreError("connection refused")
            return await attr(*args, **kwargs)

        return call


class Answers:
    """Where a delivery's replies go (the requester's side of the RPC)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.bodies: list[bytes] = []
        self.fail = fail

    async def __call__(
        self, reply_to: str, body: bytes, headers: Mapping[str, Any], corr: str | None
    ) -> None:
        if self.fail:
            raise BusError("connection lost")
        self.bodies.append(body)


def delivery(
    answers: Answers, *, reply_to: str | None = "reply.1", redelivered: bool = False
) -> Delivery:
    return BusDelivery(
        attempt=1,
        max_attempts=5,
        reply_to=reply_to,
        redelivered=redelivered,
        headers={},
        message_id="m1",
        correlation_id="c1",
        replier=answers,
    )


class Harness:
    def __init__(
        self, router: Router, store: FlakyStore, sent: list[SendCommand], fresh: list[bool]
    ) -> None:
        self.router = router
        self.store = store
        self.sent = sent
        self.fresh = fresh
        """Whether each command in ``sent`` reached the sender as fresh (not a repeat)."""


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    bus = MemoryBus.fresh()
    await bus.declare()
    url = f"memory://router-unit-{uuid.uuid4().hex}"
    store = FlakyStore(MemoryStore.shared(url, prefix="t:"))
    sent: list[SendCommand] = []
    fresh: list[bool] = []

    async def collect(msg: AnyMessage, got: Delivery) -> None:
        assert isinstance(msg, SendCommand)
        sent.append(msg)
        fresh.append(got.fresh)

    await bus.consume(
        QueueSpec(name="t.commands", exchange=COMMANDS, bindings=("send.#",)), collect
    )
    router = Router(
        bus=bus,
        store=store,  # type: ignore[arg-type]  # the Store protocol, failing on demand
        rules=await Rules.open(path),
        budget_ms=2000,
        session_ttl_s=60,
        plan_ttl_s=60,
    )
    try:
        yield Harness(router, store, sent, fresh)
    finally:
        await bus.close()
        MemoryStore.forget(url)


def counter(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_store_down_still_answers_then_retries(harness: Harness) -> None:
    answers = Answers()
    event = text("转人工")
    harness.store.down = True
    with pytest.raises(Retry, match="store unavailable"):
        await handle_event(harness.router, event, delivery(answers))
    (body,) = answers.bodies
    reply = decode_reply(body)
    assert (reply.event_id, reply.transfer, reply.rule) == (event.id, True, "agent")
    assert harness.sent == []
    # The store is back: the retry does the work once.
    harness.store.down = False
    await handle_event(harness.router, event, delivery(answers, reply_to=None))
    (cmd,) = await until(lambda: harness.sent, what="the reply command")
    assert isinstance(cmd, SendText)
    assert cmd.cause_id == event.id


async def test_a_failed_answer_does_not_stop_the_work(harness: Harness) -> None:
    before = counter("wxkf_router_answer_failures_total")
    event = text("hi")
    await handle_event(harness.router, event, delivery(Answers(fail=True)))
    assert counter("wxkf_router_answer_failures_total") == before + 1
    (cmd,) = await until(lambda: harness.sent, what="the reply command")
    assert cmd.cause_id == event.id


async def test_an_event_asked_for_is_answered_no_transfer(harness: Harness) -> None:
    answers = Answers()
    await handle_event(harness.router, enter(), delivery(answers))
    assert decode_reply(answers.bodies[0]).transfer is False


async def test_no_reply_address_no_answer(harness: Harness) -> None:
    answers = Answers()
    await handle_event(harness.router, text("hi"), delivery(answers, reply_to=None))
    assert answers.bodies == []


async def test_a_command_on_the_events_queue_is_rejected(harness: Harness) -> None:
    stray = SendText(appid="a", openid="o", correlation_id="c", content="x")
    with pytest.raises(Reject, match=r"send\.text is not an inbound event"):
        await handle_event(harness.router, stray, delivery(Answers()))


async def test_a_plan_carried_out_whose_done_mark_is_lost_is_not_carried_out_again(
    harness: Harness,
) -> None:
    event = text("hi")
    answers = Answers()
    original_set = harness.store.inner.set

    async def failing_set(key: str, value: bytes, **kwargs: Any) -> None:
        # The last step fails: marking the plan done, after everything was published.
        if key.startswith("router:plan:"):
            raise StoreError("timeout")
        await original_set(key, value, **kwargs)

    harness.store.inner.set = failing_set  # type: ignore[method-assign]
    before = counter("wxkf_router_plans_not_marked_done_total")
    await handle_event(harness.router, event, delivery(answers))  # acked: nothing to redo
    assert counter("wxkf_router_plans_not_marked_done_total") == before + 1
    assert len(answers.bodies) == 1
    harness.store.inner.set = original_set  # type: ignore[method-assign]
    # Should the event come again, the unfinished plan is resumed: the same command id,
    # published as a possible repeat for the sender to deduplicate; the plan is then done.
    await handle_event(harness.router, event, delivery(answers, redelivered=True))
    assert decode_reply(answers.bodies[1]) == decode_reply(answers.bodies[0])
    cmds = await until(lambda: harness.sent, lambda s: len(s) == 2, what="two publishes")
    assert cmds[0].id == cmds[1].id
    assert harness.fresh == [True, False]
    raw = await harness.store.get(plans.key(event.id))
    assert raw is not None
    assert plans.decode(raw).done


@pytest.mark.parametrize(("redelivered", "fresh"), [(True, False), (False, True)])
async def test_a_plan_the_store_may_have_forgotten_is_carried_out_as_possible_repeats(
    harness: Harness, redelivered: bool, fresh: bool
) -> None:
    # The store lost its memory after the event was made (the test events' CreateTime is in
    # the past).
    harness.store.inner.lose_everything()
    forgotten = counter("wxkf_router_redelivered_events_total", {"outcome": "forgotten"})
    await handle_event(harness.router, text("hi"), delivery(Answers(), redelivered=redelivered))
    await until(lambda: harness.sent, lambda s: len(s) == 1, what="the command")
    # Only a delivery that may repeat an earlier one can have lost its plan to the store.
    assert harness.fresh == [fresh]
    now = counter("wxkf_router_redelivered_events_total", {"outcome": "forgotten"})
    assert now == forgotten + (0 if fresh else 1)


async def test_an_unreadable_stored_plan_is_decided_again(harness: Harness) -> None:
    event = text("转人工")
    await harness.store.set(plans.key(event.id), b"\x00garbage", ttl_s=60)
    answers = Answers()
    await handle_event(harness.router, event, delivery(answers))
    assert decode_reply(answers.bodies[0]).transfer is True
    raw = await harness.store.get(sessions.key(event.openid))
    assert raw is not None
    assert sessions.decode(raw).transferred_at == event.create_time


async def test_a_plan_stored_by_another_delivery_first_wins(harness: Harness) -> None:
    """Two deliveries of one event at once: only the plan stored first is carried out."""
    event = text("hi")
    other = plans.Plan(
        rule="other",
        transfer=False,
        commands=[
            SendText(
                appid=event.appid,
                openid=event.openid,
                correlation_id=event.correlation_id,
                cause_id=event.id,
                content="the other delivery's plan",
            )
        ],
    )
    inner = harness.store.inner
    original = inner.claim

    async def racing(mark: Write, **kwargs: Any) -> Claim:
        await original(Write(key=mark.key, value=plans.encode(other), ttl_s=mark.ttl_s))
        return await original(mark, **kwargs)

    inner.claim = racing  # type: ignore[method-assign]
    await handle_event(harness.router, event, delivery(Answers()))
    (cmd,) = await until(lambda: harness.sent, what="the command")
    assert isinstance(cmd, SendText)
    assert cmd.content == "the other delivery's plan"
    assert msgspec.json.decode(await harness.store.get(plans.key(event.id)) or b"{}")["done"]


async def test_a_decision_fact_nobody_listens_to_is_counted_not_retried(harness: Harness) -> None:
    """No queue binds decision.# here: the fact is unroutable, the work is still done."""
    before = counter("wxkf_router_decision_facts_total", {"outcome": "unroutable"})
    event = text("hi")
    await handle_event(harness.router, event, delivery(Answers()))
    assert counter("wxkf_router_decision_facts_total", {"outcome": "unroutable"}) == before + 1
    raw = await harness.store.get(plans.key(event.id))
    assert raw is not None
    assert plans.decode(raw).done


async def test_nobody_is_answered_once_wechat_stopped_waiting(harness: Harness) -> None:
    # Redelivered, or late out of a backlog: its requester gave up long ago, and its reply
    # address may name a broker node that is gone (which costs the connection answering it).
    event = msgspec.structs.replace(text("hi"), time_ms=now_ms() - 6_000)
    answers = Answers()
    skipped = counter("wxkf_router_answers_skipped_total")
    await handle_event(harness.router, event, delivery(answers))
    assert answers.bodies == []
    assert counter("wxkf_router_answers_skipped_total") == skipped + 1
    # The decision is carried out all the same.
    await until(lambda: harness.sent, lambda s: len(s) == 1, what="the command")
