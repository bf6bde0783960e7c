"""WeChat's retries: one event per push however many attempts, on one replica or several."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from libs.common.schemas import TextReceived, UserMessage
from libs.common.wechat import replies
from libs.common.wechat.crypto import Cipher
from tests.integration.ingress.harness import (
    AES_KEY,
    APPID,
    TOKEN,
    Backend,
    Push,
    Responder,
    Tap,
    counts,
    ingress,
    pusher,
    sample,
    settings,
    text_message,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

CIPHER = Cipher.from_key(AES_KEY, APPID)


def wants_agent(msg: UserMessage) -> bool:
    return isinstance(msg, TextReceived) and "转" in msg.content


def kind(answer: bytes) -> str:
    return replies.read_reply(answer, token=TOKEN, cipher=CIPHER, fmt="xml").kind


async def test_three_retries_of_one_push_make_one_event(backend: Backend) -> None:
    conf = settings(backend)
    bus = await backend.bus()
    tap = await Tap(backend, bus).start()
    await Responder(bus, decide=lambda msg: True).start()
    push = Push(conf, text_message("请转人工"))
    async with ingress(backend, conf) as url, aiohttp.ClientSession() as session:
        answers = [await push.send(session, url) for _ in range(3)]
    assert [status for status, _ in answers] == [200, 200, 200]
    # The same answer each time (encrypted afresh, so compared by meaning).
    assert [kind(body) for _, body in answers] == ["transfer_customer_service"] * 3
    events = await tap.events(at_least=1)
    assert counts(events) == {push.event_id: 1}


async def test_simultaneous_copies_make_one_event(backend: Backend) -> None:
    conf = settings(backend)
    bus = await backend.bus()
    tap = await Tap(backend, bus).start()
    await Responder(bus).start()
    pushes = [Push(conf, text_message(f"message {i}")) for i in range(10)]
    async with ingress(backend, conf) as url, aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(p.send(session, url) for p in pushes for _ in range(3)))
    assert {status for status, _ in answers} == {200}
    assert {body for _, body in answers} == {replies.SUCCESS}
    events = await tap.events(at_least=len(pushes))
    assert counts(events) == {p.event_id: 1 for p in pushes}


async def test_a_retry_while_the_first_attempt_waits_gets_the_same_answer(
    backend: Backend,
) -> None:
    conf = settings(backend)
    bus = await backend.bus()
    tap = await Tap(backend, bus).start()
    router = await Responder(bus, decide=lambda msg: True).start()
    router.hold.clear()  # the router is slow to decide
    push = Push(conf, text_message("slow decision"))
    pending_hits = sample('wxkf_ingress_dedupe_hits_total{state="pending"}')
    async with ingress(backend, conf) as url, aiohttp.ClientSession() as session:
        first = asyncio.ensure_future(push.send(session, url))
        await eventually(lambda: len(router.seen), lambda n: n >= 1, what="the event published")
        retry = asyncio.ensure_future(push.send(session, url))
        await eventually(
            lambda: sample('wxkf_ingress_dedupe_hits_total{state="pending"}'),
            lambda n: n > pending_hits,
            what="the retry waiting on the first attempt",
        )
        assert not retry.done()
        router.hold.set()
        answers = await asyncio.gather(first, retry)
    assert [status for status, _ in answers] == [200, 200]
    assert [kind(body) for _, body in answers] == ["transfer_customer_service"] * 2
    events = await tap.events(at_least=1)
    assert counts(events) == {push.event_id: 1}


async def test_wechat_retrying_a_slow_answer_gets_one_event_and_the_answer(
    backend: Backend,
) -> None:
    conf = settings(backend, decision_budget_ms=3000)
    bus = await backend.bus()
    tap = await Tap(backend, bus).start()
    router = await Responder(bus, decide=lambda msg: True).start()
    router.hold.clear()
    pending_hits = sample('wxkf_ingress_dedupe_hits_total{state="pending"}')
    # This WeChat gives up on an attempt after 1 s and sends the very same push again.
    async with (
        ingress(backend, conf) as url,
        pusher(url, conf, timeout_s=1.0, attempts=3) as wechat,
    ):
        result = asyncio.ensure_future(wechat.text("anyone?"))
        await eventually(
            lambda: sample('wxkf_ingress_dedupe_hits_total{state="pending"}'),
            lambda n: n > pending_hits,
            what="a retry waiting on the first attempt",
        )
        router.hold.set()
        outcome = await result
    # A later attempt got the first attempt's answer; the push went to the bus once.
    assert outcome.attempts >= 2
    assert outcome.outcome == "transfer_customer_service"
    events = await tap.events(at_least=1)
    assert len(events) == 1


async def test_two_replicas_sharing_the_store_publish_each_push_once(backend: Backend) -> None:
    conf = settings(backend)
    bus = await backend.bus()
    tap = await Tap(backend, bus).start()
    await Responder(bus, decide=wants_agent).start()
    pushes = [Push(conf, text_message("转人工" if i % 2 else f"hello {i}")) for i in range(20)]
    async with (
        ingress(backend, conf) as one,
        ingress(backend, conf, store=await backend.store()) as two,
        aiohttp.ClientSession() as session,
    ):
        assert one != two
        answers = await asyncio.gather(
            *(p.send(session, url) for p in pushes for url in (one, two, one, two))
        )
    assert {status for status, _ in answers} == {200}
    for i in range(len(pushes)):
        got = {kind(body) for _, body in answers[4 * i : 4 * i + 4]}
        assert got == {"transfer_customer_service" if i % 2 else "success"}, (i, got)
    events = await tap.events(at_least=len(pushes))
    assert counts(events) == {p.event_id: 1 for p in pushes}
