"""The HTTP edge in process, on the memory twins: bad input, failures, answers, logs."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from libs.common.bus.memory import MemoryBus
from libs.common.inbound import event_id
from libs.common.schemas import DecisionReply
from libs.common.settings import Secret
from libs.common.store import Claim, RateLimit, StoreError, Write
from libs.common.store.memory import MemoryStore
from libs.common.topology import EVENTS, ROUTER_EVENTS, QueueSpec
from libs.common.web import internal_app
from libs.common.wechat import codec, replies
from libs.common.wechat.codec import Format
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.push import Mode, build_push
from libs.common.wechat.signature import sign
from services.ingress import push as push_module
from services.ingress.app import create_app
from services.ingress.dedupe import key_for
from services.ingress.settings import IngressSettings
from services.ingress.spool import STREAM
from tests.support.slow_store import SlowDoneStore
from tests.support.waiting import eventually

TOKEN = "unit-token"
AES_KEY = "A" * 43
APPID = "wxba5fad812f8e6fb9"
GH = "gh_97417a04a28d"
OPENID = "o9AgO5Kd5ggOC-bXrbNODIiE3bGY"
CONTENT = "我的订单号是 12345"
TAP = QueueSpec(name="unit.ingress.tap", exchange=EVENTS, bindings=("msg.#", "event.#"))

_msg_ids = iter(range(2**60, 2**61))
_nonces = iter(range(415670741, 2**62))


def text(content: str = CONTENT, msg_id: int | None = None) -> codec.TextMessage:
    return codec.TextMessage(
        to_user=GH,
        from_user=OPENID,
        create_time=int(time.time()),
        content=content,
        msg_id=msg_id or next(_msg_ids),
    )


def conf(**overrides: Any) -> IngressSettings:
    values: dict[str, Any] = {
        "appid": APPID,
        "token": Secret(TOKEN),
        "aes_key": Secret(AES_KEY),
        "decision_budget_ms": 200,
    }
    values.update(overrides)
    return IngressSettings(**values)


class Env:
    def __init__(
        self,
        client: TestClient[Any, Any],
        bus: MemoryBus,
        settings: IngressSettings,
        internal: TestClient[Any, Any],
    ):
        self.client = client
        self.internal = internal
        """The internal port: health, readiness, metrics."""
        self.bus = bus
        self.settings = settings
        self.cipher = Cipher.from_key(AES_KEY, APPID)

    def build(
        self, msg: codec.Message | bytes, *, mode: Mode | None = None, fmt: Format = "xml"
    ) -> tuple[dict[str, str], bytes]:
        return build_push(
            msg,
            token=TOKEN,
            cipher=self.cipher,
            mode=mode or self.settings.mode,
            fmt=fmt,
            timestamp=int(time.time()),
            nonce=str(next(_nonces)),
            to_user=GH,
            openid=OPENID,
        )

    async def post(
        self,
        query: dict[str, str],
        body: bytes | AsyncIterator[bytes],
        content_type: str = "text/xml",
        **kwargs: Any,
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type, **kwargs.pop("headers", {})}
        resp = await self.client.post(
            self.settings.push_path, params=query, data=body, headers=headers, **kwargs
        )
        return resp.status, await resp.read()

    def published(self) -> int:
        # Nobody consumes the tap, so what is ready in it is everything that was published.
        return len(self.bus.broker.queues[TAP.name].ready)


@contextlib.asynccontextmanager
async def start(
    settings: IngressSettings, *, store: MemoryStore | None = None, bus: MemoryBus | None = None
) -> AsyncIterator[Env]:
    bus = bus or MemoryBus.fresh()
    await bus.declare([TAP])
    app = create_app(settings, bus=bus, store=store or MemoryStore(prefix="unit:"))
    async with (
        TestClient(TestServer(app)) as client,
        TestClient(TestServer(internal_app([app]))) as internal,
    ):
        yield Env(client, bus, settings, internal)


@pytest.fixture
async def safe() -> AsyncIterator[Env]:
    async with start(conf()) as env:
        yield env


@pytest.fixture
async def plain() -> AsyncIterator[Env]:
    async with start(conf(push_mode="plain", aes_key=None)) as env:
        yield env


def refusals(reason: str) -> float:
    value = REGISTRY.get_sample_value("wxkf_ingress_bad_input_total", {"reason": reason})
    return value or 0.0


async def expect_refusal(
    env: Env,
    query: dict[str, str],
    body: bytes,
    status: int,
    reason: str,
    content_type: str = "text/xml",
) -> None:
    before = refusals(reason)
    with structlog.testing.capture_logs() as logs:
        got, answer = await env.post(query, body, content_type=content_type)
    assert (got, answer) == (status, reason.encode())
    assert refusals(reason) == before + 1
    assert env.published() == 0
    assert any(line.get("reason") == reason for line in logs)
    shown = repr(logs)
    for secret in (TOKEN, AES_KEY, CONTENT, OPENID):
        assert secret not in shown


# --- bad input: refused, counted, logged without content, nothing published -----------------


async def test_missing_signature(plain: Env) -> None:
    query, body = plain.build(text(), mode="plain")
    del query["signature"]
    await expect_refusal(plain, query, body, 401, "bad_signature")


async def test_wrong_signature(plain: Env) -> None:
    query, body = plain.build(text(), mode="plain")
    query["signature"] = sign("another token", query["timestamp"], query["nonce"])
    await expect_refusal(plain, query, body, 401, "bad_signature")


async def test_wrong_msg_signature(safe: Env) -> None:
    query, body = safe.build(text())
    query["msg_signature"] = "0" * 40
    await expect_refusal(safe, query, body, 401, "bad_signature")


async def test_safe_mode_refuses_a_plaintext_push_whatever_its_signature(safe: Env) -> None:
    query, body = safe.build(text(), mode="plain")
    assert query["signature"] == sign(TOKEN, query["timestamp"], query["nonce"])
    await expect_refusal(safe, query, body, 403, "plaintext_refused")


async def test_expired_timestamp(plain: Env) -> None:
    old = int(time.time()) - plain.settings.max_push_age_s - 60
    query, body = build_push(
        text(), token=TOKEN, cipher=None, mode="plain", fmt="xml", timestamp=old, nonce="1"
    )
    await expect_refusal(plain, query, body, 401, "expired_timestamp")


async def test_missing_timestamp(plain: Env) -> None:
    query, body = plain.build(text(), mode="plain")
    del query["timestamp"]
    await expect_refusal(plain, query, body, 400, "bad_query")


async def test_malformed_xml(plain: Env) -> None:
    query, _ = plain.build(text(), mode="plain")
    await expect_refusal(plain, query, b"<xml><ToUserName>gh</xml", 400, "malformed_xml")


async def test_malformed_json(plain: Env) -> None:
    query, _ = plain.build(text(), mode="plain")
    await expect_refusal(
        plain, query, b'{"ToUserName": ', 400, "malformed_json", "application/json"
    )


async def test_xml_with_a_doctype_is_refused(plain: Env) -> None:
    query, _ = plain.build(text(), mode="plain")
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><A>&a;</A></xml>'
    await expect_refusal(plain, query, bomb, 400, "xml_forbidden_construct")


async def test_missing_field_of_a_known_type(plain: Env) -> None:
    query, _ = plain.build(text(), mode="plain")
    body = (
        b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName>"
        b"<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content></xml>"
    )
    await expect_refusal(plain, query, body, 400, "missing_field")


async def test_msg_id_as_a_float_is_refused(plain: Env) -> None:
    query, _ = plain.build(text(), mode="plain")
    body = (
        b'{"ToUserName":"gh","FromUserName":"o","CreateTime":1,"MsgType":"text",'
        b'"Content":"x","MsgId":6.054768590064714e18}'
    )
    await expect_refusal(plain, query, body, 400, "bad_field", "application/json")


async def test_body_neither_xml_nor_json(plain: Env) -> None:
    query, _ = plain.build(text(), mode="plain")
    await expect_refusal(plain, query, b"hello", 415, "unsupported_format", "text/plain")


async def test_empty_body(plain: Env) -> None:
    query, _ = plain.build(text(), mode="plain")
    await expect_refusal(plain, query, b"", 400, "empty_body")


async def test_format_other_than_configured() -> None:
    async with start(conf(push_format="xml")) as env:
        query, body = env.build(text(), fmt="json")
        await expect_refusal(env, query, body, 415, "unsupported_format", "application/json")


async def test_unsupported_content_type(plain: Env) -> None:
    query, body = plain.build(text(), mode="plain")
    await expect_refusal(
        plain, query, body, 415, "unsupported_content_type", "multipart/form-data; boundary=x"
    )


async def test_too_large_by_content_length(plain: Env) -> None:
    query, _ = plain.build(text(), mode="plain")
    body = b"<xml>" + b" " * plain.settings.max_body_bytes + b"</xml>"
    await expect_refusal(plain, query, body, 413, "too_large")


async def test_too_large_without_content_length(plain: Env) -> None:
    query, _ = plain.build(text(), mode="plain")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"<xml>"
        for _ in range(plain.settings.max_body_bytes // 1024 + 2):
            yield b" " * 1024

    before = refusals("too_large")
    status, answer = await plain.post(query, chunks())
    assert (status, answer) == (413, b"too_large")
    assert refusals("too_large") == before + 1
    assert plain.published() == 0


async def test_a_body_slower_than_the_read_timeout_is_answered_408_and_closed() -> None:
    stalled = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b"<xml>"
        await stalled.wait()  # a client that stops sending; released when the test ends
        yield b"</xml>"

    async with start(conf(read_timeout_s=0.2)) as env:
        query, _ = env.build(text(), mode="plain")
        before = refusals("read_timeout")
        resp = await env.client.post(
            env.settings.push_path,
            params=query,
            data=trickle(),
            headers={"Content-Type": "text/xml"},
        )
        assert (resp.status, await resp.read()) == (408, b"read_timeout")
        assert resp.headers.get("Connection", "").lower() == "close"
        assert refusals("read_timeout") == before + 1
        assert env.published() == 0
        stalled.set()


def _xml(inner: bytes) -> bytes:
    head = (
        b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
    )
    return head + inner + b"</xml>"


def _json(extra: bytes) -> bytes:
    return b'{"ToUserName":"gh","FromUserName":"o","CreateTime":1,"MsgType":"text",' + extra + b"}"


XML, JSON = "text/xml", "application/json"
BAD_BODIES = {
    "non-UTF-8 XML": (
        _xml(b"<MsgType>text</MsgType><Content>\xff\xfe</Content><MsgId>1</MsgId>"),
        XML,
        "bad_encoding",
    ),
    "non-UTF-8 JSON": (_json(b'"Content":"\xff","MsgId":1'), JSON, "bad_encoding"),
    "65-bit MsgId in XML": (
        _xml(b"<MsgType>text</MsgType><Content>x</Content><MsgId>%d</MsgId>" % 2**64),
        XML,
        "bad_field",
    ),
    "65-bit MsgId in JSON": (_json(b'"Content":"x","MsgId":%d' % 2**64), JSON, "bad_field"),
    "JSON nested 50,000 deep": (
        _json(b'"Content":"x","MsgId":1,"Extra":' + b"[" * 50_000 + b"]" * 50_000),
        JSON,
        "malformed_json",
    ),
    "XML too deep": (_xml(b"<a>" * 5_000 + b"</a>" * 5_000), XML, "xml_too_deep"),
    "billion laughs": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<xml><A>&lol2;</A></xml>",
        XML,
        "xml_forbidden_construct",
    ),
    "external DTD": (
        b'<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://evil.example/x.dtd"><xml/>',
        XML,
        "xml_forbidden_construct",
    ),
    "external entity": (
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<xml><A>&e;</A></xml>",
        XML,
        "xml_forbidden_construct",
    ),
    "processing instruction": (
        _xml(b"<?evil run?><MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId>"),
        XML,
        "xml_forbidden_construct",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_input_is_refused_through_http(plain: Env, case: str) -> None:
    body, content_type, reason = BAD_BODIES[case]
    query, _ = plain.build(text(), mode="plain")
    await expect_refusal(plain, query, body, 400, reason, content_type)


@pytest.mark.parametrize("repeated", ["signature", "timestamp", "nonce", "echostr"])
async def test_a_repeated_query_parameter_is_refused(plain: Env, repeated: str) -> None:
    query, body = plain.build(text(), mode="plain")
    query["echostr"] = "e"
    pairs = [*query.items(), (repeated, "other")]
    before = refusals("bad_query")
    resp = await plain.client.post(
        plain.settings.push_path, params=pairs, data=body, headers={"Content-Type": "text/xml"}
    )
    assert (resp.status, await resp.read()) == (400, b"bad_query")
    assert refusals("bad_query") == before + 1
    resp = await plain.client.get(plain.settings.push_path, params=pairs)
    assert (resp.status, await resp.read()) == (400, b"bad_query")
    assert plain.published() == 0


async def test_a_plain_signature_reused_with_another_body_is_refused(plain: Env) -> None:
    query, body = plain.build(text("first"), mode="plain")
    assert await plain.post(query, body) == (200, replies.SUCCESS)
    _, other = plain.build(text("forged"), mode="plain")
    before = refusals("replayed_signature")
    assert await plain.post(query, other) == (401, b"replayed_signature")
    assert refusals("replayed_signature") == before + 1
    # WeChat's own retry (the same query and body) is still answered.
    assert await plain.post(query, body) == (200, replies.SUCCESS)
    assert plain.published() == 1


async def test_envelope_without_encrypt(safe: Env) -> None:
    query, _ = safe.build(text())
    body = b"<xml><ToUserName><![CDATA[gh]]></ToUserName></xml>"
    await expect_refusal(safe, query, body, 400, "missing_encrypt")


async def test_wrong_appid_in_the_ciphertext(safe: Env) -> None:
    stranger = Cipher.from_key(AES_KEY, "wx0000000000000000")
    query, body = build_push(
        text(),
        token=TOKEN,
        cipher=stranger,
        mode="safe",
        fmt="xml",
        timestamp=int(time.time()),
        nonce="1",
    )
    await expect_refusal(safe, query, body, 403, "bad_appid")


async def test_ciphertext_that_does_not_decrypt(safe: Env) -> None:
    other_key = Cipher.from_key("B" * 43, APPID)
    query, body = build_push(
        text(),
        token=TOKEN,
        cipher=other_key,
        mode="safe",
        fmt="xml",
        timestamp=int(time.time()),
        nonce="1",
    )
    # Another key decrypts to noise: its padding (or length, or appid) cannot hold.
    before = sum(refusals(r) for r in ("bad_padding", "bad_length", "bad_appid"))
    status, _ = await safe.post(query, body)
    assert status in (400, 403)
    assert sum(refusals(r) for r in ("bad_padding", "bad_length", "bad_appid")) == before + 1
    assert safe.published() == 0


async def test_ciphertext_that_is_not_base64(safe: Env) -> None:
    encrypt = "not base64 at all!"
    timestamp = str(int(time.time()))
    query = {
        "timestamp": timestamp,
        "nonce": "1",
        "encrypt_type": "aes",
        "msg_signature": sign(TOKEN, timestamp, "1", encrypt),
    }
    body = b"<xml><ToUserName>gh</ToUserName><Encrypt>" + encrypt.encode() + b"</Encrypt></xml>"
    await expect_refusal(safe, query, body, 400, "bad_base64")


async def test_verification_with_a_wrong_signature(plain: Env) -> None:
    query = {"signature": "0" * 40, "timestamp": "1", "nonce": "2", "echostr": "echo-me"}
    resp = await plain.client.get(plain.settings.push_path, params=query)
    assert resp.status == 401
    assert b"echo-me" not in await resp.read()


async def test_verification_echoes_exactly(plain: Env) -> None:
    # WECHAT.md §2's worked example, with our token.
    query = {
        "signature": sign(TOKEN, "1714036504", "1514711492"),
        "timestamp": "1714036504",
        "nonce": "1514711492",
        "echostr": "4375120948345356249",
    }
    resp = await plain.client.get(plain.settings.push_path, params=query)
    assert resp.status == 200
    assert await resp.read() == b"4375120948345356249"


# --- failures of the bus and the store: 503, never success, nothing lost ------------------------


async def test_publish_failure_without_a_spool_answers_503_and_the_retry_publishes() -> None:
    store = MemoryStore(prefix="unit:")
    broken = MemoryBus.fresh()
    async with start(conf(spool_limit=0), store=store, bus=broken) as env:
        query, body = env.build(text())
        await broken.close()  # every publish now fails, as with a broker that is gone
        failures = REGISTRY.get_sample_value("wxkf_ingress_publish_failures_total") or 0.0
        status, answer = await env.post(query, body)
        assert (status, answer) == (503, b"unconfirmed")
        assert REGISTRY.get_sample_value("wxkf_ingress_publish_failures_total") == failures + 1
    # WeChat retries, here to a replica whose broker works: the key was released.
    async with start(conf(), store=store) as env:
        status, answer = await env.post(query, body)
        assert (status, answer) == (200, replies.SUCCESS)
        assert env.published() == 1


class DownStore(MemoryStore):
    """The memory store answering as a Redis that cannot be reached."""

    async def claim(
        self,
        mark: Write,
        *,
        window: str | None = None,
        now: float | None = None,
        rate: RateLimit | None = None,
        also: Sequence[Write] = (),
        flag: str | None = None,
    ) -> Claim:
        raise StoreError("connection refused")

    async def get(self, key: str) -> bytes | None:
        raise StoreError("connection refused")


async def test_an_event_the_broker_does_not_take_is_spooled_and_relayed_once_it_can() -> None:
    store = MemoryStore(prefix=f"unit-{uuid.uuid4().hex}:")
    broken = MemoryBus.fresh()
    async with start(conf(), store=store, bus=broken) as env:
        query, body = env.build(text())
        await broken.close()  # every publish now fails, as with a broker that is gone
        spooled = REGISTRY.get_sample_value("wxkf_ingress_spooled_total") or 0.0
        assert await env.post(query, body) == (200, replies.SUCCESS)
        assert REGISTRY.get_sample_value("wxkf_ingress_spooled_total") == spooled + 1
        # A retry finds it settled: the same answer, nothing kept twice.
        assert await env.post(query, body) == (200, replies.SUCCESS)
        assert REGISTRY.get_sample_value("wxkf_ingress_spooled_total") == spooled + 1
    # Another ingress whose broker works relays what the spool kept, and empties it.
    async with start(conf(), store=store) as env:
        await eventually(env.published, lambda n: n == 1, what="the spooled event relayed")
        assert await store.stream_head(STREAM, count=10) == []
        assert env.published() == 1


async def test_with_the_store_down_a_push_is_published_without_dedupe() -> None:
    async with start(conf(), store=DownStore(prefix="down:")) as env:
        query, body = env.build(text())
        assert await env.post(query, body) == (200, replies.SUCCESS)
        assert env.published() == 1


async def test_with_the_store_and_the_broker_down_a_push_gets_503() -> None:
    broken = MemoryBus.fresh()
    async with start(conf(), store=DownStore(prefix="down:"), bus=broken) as env:
        query, body = env.build(text())
        await broken.close()
        assert await env.post(query, body) == (503, b"unconfirmed")


class StalledStore(MemoryStore):
    """A Redis that was paused: calls are sent and never answered (within a test)."""

    async def claim(self, mark: Write, **kwargs: Any) -> Claim:
        await asyncio.sleep(60)
        raise StoreError("timed out")


async def test_a_push_nothing_keeps_in_time_gets_503_before_wechat_stops_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(push_module, "ANSWER_BOUND_S", 0.3)
    async with start(conf(), store=StalledStore(prefix="stalled:")) as env:
        query, body = env.build(text())
        labels = {"type": "msg.text", "outcome": "overdue"}
        before = REGISTRY.get_sample_value("wxkf_ingress_pushes_total", labels) or 0.0
        assert await env.post(query, body) == (503, b"overdue")
        assert REGISTRY.get_sample_value("wxkf_ingress_pushes_total", labels) == before + 1


# --- answers --------------------------------------------------------------------------------


async def test_retry_gets_the_same_transfer_answer_re_encrypted() -> None:
    bus = MemoryBus.fresh()

    async def router(msg: Any, delivery: Any) -> None:
        await delivery.reply(DecisionReply(event_id=msg.id, transfer=True, rule="t"))

    await bus.consume(ROUTER_EVENTS, router)
    async with start(conf(), bus=bus) as env:
        query, body = env.build(text())
        first = await env.post(query, body)
        again = await env.post(query, body)
        assert first[0] == again[0] == 200
        for _, answer in (first, again):
            reply = replies.read_reply(answer, token=TOKEN, cipher=env.cipher, fmt="xml")
            assert reply.kind == "transfer_customer_service"
            assert reply.to_user == OPENID
        assert env.published() == 1
    await bus.stop_consuming()


async def test_an_accepted_push_is_logged_without_content_or_openid(safe: Env) -> None:
    query, body = safe.build(text())
    with structlog.testing.capture_logs() as logs:
        status, _ = await safe.post(query, body)
    assert status == 200
    accepted = [line for line in logs if line["event"] == "push.accepted"]
    assert len(accepted) == 1
    assert accepted[0]["type"] == "msg.text"
    shown = repr(logs)
    for secret in (TOKEN, AES_KEY, CONTENT, OPENID):
        assert secret not in shown


async def test_health_and_readiness_on_the_internal_port_only(safe: Env) -> None:
    assert (await safe.internal.get("/healthz")).status == 200
    assert (await safe.internal.get("/readyz")).status == 200
    metrics = await (await safe.internal.get("/metrics")).text()
    assert "wxkf_ingress_pushes_total" in metrics
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await safe.client.get(path)).status == 404


class Unreachable(MemoryStore):
    async def ping(self) -> None:
        raise StoreError("connection refused")


async def test_ready_with_the_store_down_while_the_bus_answers() -> None:
    async with start(conf(), store=Unreachable(prefix=uuid.uuid4().hex)) as env:
        resp = await env.internal.get("/readyz")
        assert resp.status == 200
        assert (await resp.json())["degraded"] == {"store": "StoreError"}


async def test_not_ready_when_neither_the_bus_nor_the_store_answers() -> None:
    broken = MemoryBus.fresh()
    async with start(conf(), store=Unreachable(prefix=uuid.uuid4().hex), bus=broken) as env:
        await broken.close()
        resp = await env.internal.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["check"] == "bus"


async def test_without_a_spool_the_bus_must_answer_to_be_ready() -> None:
    broken = MemoryBus.fresh()
    async with start(conf(spool_limit=0), bus=broken) as env:
        await broken.close()
        resp = await env.internal.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["check"] == "bus"


async def test_replay_window_off_accepts_an_old_push() -> None:
    async with start(conf(push_mode="plain", aes_key=None, max_push_age_s=0)) as env:
        old = int(time.time()) - 86400
        query, body = build_push(
            text(), token=TOKEN, cipher=None, mode="plain", fmt="xml", timestamp=old, nonce="1"
        )
        assert await env.post(query, body) == (200, replies.SUCCESS)
        assert env.published() == 1


async def test_a_decision_for_another_event_is_not_taken() -> None:
    bus = MemoryBus.fresh()

    async def confused_router(msg: Any, delivery: Any) -> None:
        await delivery.reply(DecisionReply(event_id="another-event", transfer=True, rule="t"))

    await bus.consume(ROUTER_EVENTS, confused_router)
    invalid = REGISTRY.get_sample_value("wxkf_ingress_decisions_total", {"result": "invalid"})
    async with start(conf(), bus=bus) as env:
        query, body = env.build(text())
        assert await env.post(query, body) == (200, replies.SUCCESS)
        assert env.published() == 1
    after = REGISTRY.get_sample_value("wxkf_ingress_decisions_total", {"result": "invalid"})
    assert after == (invalid or 0.0) + 1
    await bus.stop_consuming()


async def test_beyond_the_in_flight_bound_pushes_are_shed() -> None:
    bus = MemoryBus.fresh()
    release = asyncio.Event()

    async def slow_router(msg: Any, delivery: Any) -> None:
        await release.wait()
        await delivery.reply(DecisionReply(event_id=msg.id, transfer=False, rule="t"))

    await bus.consume(ROUTER_EVENTS, slow_router)
    shed = REGISTRY.get_sample_value("wxkf_ingress_shed_total") or 0.0
    async with start(conf(max_in_flight=1), bus=bus) as env:
        first = env.build(text())
        second = env.build(text())
        waiting = asyncio.ensure_future(env.post(*first))
        await eventually(env.published, lambda n: n == 1, what="the first push published")
        assert await env.post(*second) == (503, b"overloaded")
        assert REGISTRY.get_sample_value("wxkf_ingress_shed_total") == shed + 1
        release.set()
        assert await waiting == (200, replies.SUCCESS)
        # WeChat sends the shed push again; now there is room.
        assert await env.post(*second) == (200, replies.SUCCESS)
        assert env.published() == 2
    await bus.stop_consuming()


async def test_the_answer_goes_out_before_done_is_written_and_the_stop_waits_for_it() -> None:
    store = SlowDoneStore()
    push = text()
    settings = conf(push_mode="plain", aes_key=None)
    key = key_for(event_id(push, appid=settings.appid))
    env_cm = start(settings, store=store)
    env = await env_cm.__aenter__()
    query, body = env.build(push)
    # Bounded only so that an answer waiting for the write fails instead of hanging.
    async with asyncio.timeout(30):
        status, answer = await env.post(query, body)
    assert (status, answer) == (200, replies.SUCCESS)
    await store.writing.wait()
    assert b"pending" in (await store.get(key) or b"")
    stopping = asyncio.ensure_future(env_cm.__aexit__(None, None, None))
    for _ in range(50):  # loop turns: a stop that does not wait would be over by now
        await asyncio.sleep(0)
    assert not stopping.done()
    store.land.set()
    await stopping
    assert b"done" in (await store.get(key) or b"")
