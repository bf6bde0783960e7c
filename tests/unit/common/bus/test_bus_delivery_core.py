"""The delivery core both backends share: verdicts, headers, dead-letter descriptions and
which waiting request a reply answers (libs/common/bus/delivery.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
import structlog

from libs.common.bus import (
    ATTEMPT_HEADER,
    DEATH_REASON_HEADER,
    REPEAT_HEADER,
    REQUEST_ID_HEADER,
    ROUTING_KEY_HEADER,
)
from libs.common.bus import delivery as dl
from libs.common.bus.outcomes import Reject, Retry
from libs.common.schemas import AnyMessage, DecisionReply, TextReceived, encode
from libs.common.topology import EVENTS, QueueSpec

SPEC = QueueSpec(name="q", exchange=EVENTS, bindings=("#",), max_attempts=3, retry_base_s=0.5)
MSG = TextReceived(
    appid="wx1", openid="o1", correlation_id="corr-1", to_user="gh", create_time=1, msg_id=7,
    content="hi",
)  # fmt: skip


class Replies:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Mapping[str, Any], str | None]] = []

    async def __call__(
        self, reply_to: str, body: bytes, headers: Mapping[str, Any], corr: str | None
    ) -> None:
        self.sent.append((reply_to, body, headers, corr))


def delivery(attempt: int = 1, **fields: Any) -> dl.Delivery:
    values: dict[str, Any] = {
        "attempt": attempt,
        "max_attempts": SPEC.max_attempts,
        "reply_to": None,
        "redelivered": False,
        "headers": {},
        "message_id": MSG.id,
        "correlation_id": MSG.correlation_id,
        "replier": Replies(),
    }
    values.update(fields)
    return dl.Delivery(**values)


async def verdict(behaviour: Exception | None, attempt: int = 1) -> dl.Verdict:
    async def handler(msg: AnyMessage, d: Any) -> None:
        if behaviour is not None:
            raise behaviour

    return await dl.handle(SPEC, handler, encode(MSG), delivery(attempt))


async def test_a_return_acks() -> None:
    assert await verdict(None) == dl.Verdict(outcome="ack")


async def test_retry_waits_the_backoff_and_the_last_attempt_dead_letters() -> None:
    assert await verdict(Retry("later")) == dl.Verdict(outcome="retry", reason="later", delay_s=0.5)
    assert (await verdict(Retry("later"), attempt=2)).delay_s == 1.0
    last = await verdict(Retry("later"), attempt=3)
    assert last == dl.Verdict(outcome="dead_letter", reason="attempts exhausted: later")


async def test_any_other_exception_is_a_retry_named_by_its_type() -> None:
    got = await verdict(KeyError("x"))
    assert got.outcome == "retry"
    assert got.reason == "KeyError: 'x'"


async def test_reject_dead_letters_at_once() -> None:
    assert await verdict(Reject("no")) == dl.Verdict(outcome="dead_letter", reason="rejected: no")


async def test_a_long_reason_is_bounded() -> None:
    got = await verdict(Reject("x" * 5000))
    assert len(got.reason) == dl.REASON_MAX_CHARS


async def test_an_undecodable_body_never_reaches_the_handler() -> None:
    called = False

    async def handler(msg: AnyMessage, d: Any) -> None:
        nonlocal called
        called = True

    got = await dl.handle(SPEC, handler, b'{"type":"nope"}', delivery())
    assert got.outcome == "undecodable"
    assert got.reason.startswith("undecodable: ")
    assert not called


async def test_each_delivery_binds_its_correlation_and_event_ids_afresh() -> None:
    structlog.contextvars.bind_contextvars(correlation_id="stale", leftover="x")
    bound: dict[str, Any] = {}

    async def handler(msg: AnyMessage, d: Any) -> None:
        bound.update(structlog.contextvars.get_contextvars())

    await dl.handle(SPEC, handler, encode(MSG), delivery())
    assert bound["correlation_id"] == MSG.correlation_id
    assert bound["event_id"] == MSG.id
    assert "leftover" not in bound
    structlog.contextvars.clear_contextvars()


async def test_reply_goes_to_the_reply_address_with_the_request_id() -> None:
    replies = Replies()
    d = delivery(reply_to="amq.rabbitmq.reply-to.abc", replier=replies)
    answer = DecisionReply(event_id=MSG.id, transfer=True, rule="r")
    await d.reply(answer)
    ((to, body, headers, corr),) = replies.sent
    assert to == "amq.rabbitmq.reply-to.abc"
    assert msgspec.json.decode(body, type=DecisionReply) == answer
    assert headers == {REQUEST_ID_HEADER: MSG.id}
    assert corr == MSG.correlation_id
    quiet = Replies()
    await delivery(replier=quiet).reply(answer)
    assert quiet.sent == []


@pytest.mark.parametrize(
    ("headers", "attempt"),
    [
        (None, 1),
        ({}, 1),
        ({ATTEMPT_HEADER: 3}, 3),
        ({ATTEMPT_HEADER: "4"}, 4),
        ({ATTEMPT_HEADER: b"2"}, 2),
        ({ATTEMPT_HEADER: "x"}, 1),
        ({ATTEMPT_HEADER: 0}, 1),
        ({ATTEMPT_HEADER: -5}, 1),
        ({ATTEMPT_HEADER: True}, 1),
        ({ATTEMPT_HEADER: 2.5}, 1),
    ],
)
def test_attempt_header_parsing_never_fails(headers: dict[str, Any] | None, attempt: int) -> None:
    assert dl.attempt_of(headers) == attempt


def test_retry_headers_count_up_and_keep_the_first_key_but_drop_the_brokers() -> None:
    first = dl.retry_headers(
        {"x-death": [{}], "x-delivery-count": 1, "app": "v"}, "msg.text", repeat=False
    )
    assert first == {"app": "v", ROUTING_KEY_HEADER: "msg.text", ATTEMPT_HEADER: 2}
    second = dl.retry_headers(first, "q")  # travels under the queue's name from here on
    assert second[ROUTING_KEY_HEADER] == "msg.text"
    assert second[ATTEMPT_HEADER] == 3


def test_dead_and_replay_headers() -> None:
    dead = dl.dead_headers({ATTEMPT_HEADER: 3}, "msg.text", "why")
    assert dead == {
        ATTEMPT_HEADER: 3,
        ROUTING_KEY_HEADER: "msg.text",
        DEATH_REASON_HEADER: "why",
        REPEAT_HEADER: 1,
    }
    again = dl.replay_headers(dead, "msg.text")
    # A replayed dead letter may repeat work its last delivery did.
    assert again == {ATTEMPT_HEADER: 1, ROUTING_KEY_HEADER: "msg.text", REPEAT_HEADER: 1}


def test_a_retry_is_marked_a_possible_repeat_unless_told_it_left_nothing_done() -> None:
    assert dl.retry_headers({}, "msg.text")[REPEAT_HEADER] == 1
    assert REPEAT_HEADER not in dl.retry_headers({}, "msg.text", repeat=False)
    # Once a possible repeat, always one: a clean retry of it does not wash the mark off.
    assert dl.retry_headers({REPEAT_HEADER: 1}, "msg.text", repeat=False)[REPEAT_HEADER] == 1


@pytest.mark.parametrize(
    ("headers", "redelivered", "fresh"),
    [
        ({}, False, True),
        ({}, True, False),
        ({REPEAT_HEADER: 1}, False, False),
        ({REPEAT_HEADER: b"1"}, False, False),
        ({REPEAT_HEADER: 0}, False, True),
    ],
)
def test_a_delivery_is_fresh_when_nothing_says_it_may_repeat_an_earlier_one(
    headers: dict[str, Any], redelivered: bool, fresh: bool
) -> None:
    assert delivery(headers=headers, redelivered=redelivered).fresh is fresh


@pytest.mark.parametrize(
    ("raised", "redelivered", "repeat"),
    [
        (Retry("later", nothing_done=True), False, False),
        (Retry("later", nothing_done=True), True, True),
        (Retry("later"), False, True),
        (RuntimeError("boom"), False, True),
    ],
)
async def test_the_verdict_of_a_retry_says_whether_its_copy_may_repeat_work(
    raised: Exception, redelivered: bool, repeat: bool
) -> None:
    async def handler(msg: AnyMessage, d: Any) -> None:
        raise raised

    verdict = await dl.handle(SPEC, handler, encode(MSG), delivery(redelivered=redelivered))
    assert (verdict.outcome, verdict.repeat) == ("retry", repeat)


def test_a_letter_the_broker_dead_lettered_is_described_from_x_death() -> None:
    headers = {
        "x-death": [{"reason": "delivery_limit", "queue": "q", "routing-keys": ["msg.image"]}],
    }
    letter = dl.dead_letter("q", headers, "q", b"{}")
    assert (letter.reason, letter.routing_key, letter.attempts) == (
        "delivery_limit",
        "msg.image",
        1,
    )
    unknown = dl.dead_letter("q", {"x-death": "garbage"}, "q", b"")
    assert unknown.reason == "unknown"


def test_a_reply_finds_its_request_by_id_or_as_the_only_one_waiting() -> None:
    assert dl.pick_waiter(None, {}) is None
    assert dl.pick_waiter({"a": 1}, {}) == 1
    assert dl.pick_waiter({"a": 1, "b": 2}, {REQUEST_ID_HEADER: "b"}) == 2
    assert dl.pick_waiter({"a": 1, "b": 2}, {REQUEST_ID_HEADER: b"a"}) == 1
    assert dl.pick_waiter({"a": 1, "b": 2}, {}) is None
    assert dl.pick_waiter({"a": 1, "b": 2}, {REQUEST_ID_HEADER: "c"}) is None
