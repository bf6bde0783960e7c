"""The push handler fuzzed over HTTP, in every mode and format: signed pushes, then their query,
body and content type broken at random. Whatever arrives: never a 500, never more than one
event published per request, and nothing published that WeChat's token did not sign.

``make test`` runs a few dozen cases per mode and format; ``make fuzz`` runs many more
(``WXKF_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.common.bus.memory import MemoryBus
from libs.common.settings import Secret
from libs.common.store.memory import MemoryStore
from libs.common.topology import EVENTS, QueueSpec
from libs.common.wechat import codec
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.push import Mode, build_push
from libs.common.wechat.signature import sign
from services.ingress.app import create_app
from services.ingress.settings import IngressSettings

TOKEN = "fuzz-token"
AES_KEY = "B" * 43
APPID = "wxba5fad812f8e6fb9"
GH = "gh_97417a04a28d"
CIPHER = Cipher.from_key(AES_KEY, APPID)
TAP = QueueSpec(name="unit.ingress.fuzz", exchange=EVENTS, bindings=("msg.#", "event.#"))
EXAMPLES = int(os.environ.get("WXKF_FUZZ_EXAMPLES", "100"))
ANSWERS = {200, 400, 401, 403, 408, 413, 415, 503}

MODES: tuple[Mode, ...] = ("plain", "compatible", "safe")
FORMATS: tuple[codec.Format, ...] = ("xml", "json")
CONTENT_TYPES = ("text/xml", "application/json", "text/plain", "", "image/png")
SIGNATURES = ("signature", "msg_signature")
"""In the encrypted modes ``signature`` does not cover the body; ``msg_signature`` does."""

_msg_ids = iter(range(2**40, 2**41))

texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=80)
openids = st.from_regex(r"o[A-Za-z0-9_-]{27}", fullmatch=True)


@st.composite
def messages(draw: st.DrawFn) -> codec.Message:
    openid = draw(openids)
    common: dict[str, Any] = {"to_user": GH, "from_user": openid, "create_time": int(time.time())}
    kind = draw(st.sampled_from(["text", "image", "enter", "other"]))
    if kind == "text":
        return codec.TextMessage(**common, content=draw(texts), msg_id=next(_msg_ids))
    if kind == "image":
        return codec.ImageMessage(**common, media_id=draw(texts), msg_id=next(_msg_ids))
    if kind == "enter":
        return codec.EnterSessionEvent(**common, session_from=draw(texts))
    return codec.UnknownMessage(
        **common, msg_type="voice", fields={"MsgId": str(next(_msg_ids)), "Note": draw(texts)}
    )


@st.composite
def requests(
    draw: st.DrawFn, mode: Mode, fmt: codec.Format
) -> tuple[list[tuple[str, str]], bytes, str]:
    msg = draw(messages())
    query, body = build_push(
        msg,
        token=TOKEN,
        cipher=CIPHER,
        mode=mode,
        fmt=fmt,
        timestamp=int(time.time()),
        nonce=str(draw(st.integers(0, 10**10))),
        random16=draw(st.binary(min_size=16, max_size=16)),
    )
    pairs = list(query.items())
    match draw(st.sampled_from(["keep", "forge", "forge", "drop", "alter", "repeat", "junk"])):
        case "forge":  # signed with another token, all else as WeChat sends it
            name = "signature" if mode == "plain" else draw(st.sampled_from(SIGNATURES))
            pairs = [(k, sign("not-the-token", v) if k == name else v) for k, v in pairs]
        case "drop":
            del pairs[draw(st.integers(0, len(pairs) - 1))]
        case "alter":
            at = draw(st.integers(0, len(pairs) - 1))
            pairs[at] = (pairs[at][0], draw(st.text(max_size=48)))
        case "repeat":
            pairs.append(draw(st.sampled_from(pairs)))
        case "junk":
            pairs.append((draw(st.text(max_size=12)), draw(st.text(max_size=48))))
    match draw(st.sampled_from(["keep", "keep", "keep", "flip", "cut", "insert", "random"])):
        case "flip" if body:
            at = draw(st.integers(0, len(body) - 1))
            body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
        case "cut":
            body = body[: draw(st.integers(0, len(body)))]
        case "insert":
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.binary(max_size=64)) + body[at:]
        case "random":
            body = draw(st.binary(max_size=512))
    content_type = draw(st.sampled_from((f"text/{fmt}", "application/json", *CONTENT_TYPES)))
    return pairs, body, content_type


def signed(pairs: list[tuple[str, str]], body: bytes, mode: Mode) -> bool:
    """Whether WeChat's token signed this request, judged without the code under test."""
    names = [name for name, _ in pairs]
    query = dict(pairs)
    if len(names) != len(set(names)):
        return False
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    if mode == "plain":
        return query.get("signature") == sign(TOKEN, timestamp, nonce)
    encrypt = _encrypt_of(body)
    return encrypt is not None and query.get("msg_signature") == sign(
        TOKEN, timestamp, nonce, encrypt
    )


def _encrypt_of(body: bytes) -> str | None:
    try:
        document = codec.document(body, codec.detect(body, "auto"), max_bytes=len(body) + 1)
    except Exception:  # noqa: BLE001 - whatever does not parse carries no Encrypt
        return None
    value = document.get("Encrypt")
    return value if isinstance(value, str) else None


@contextlib.asynccontextmanager
async def served(mode: Mode, fmt: codec.Format) -> AsyncIterator[tuple[TestClient, MemoryBus]]:
    bus = MemoryBus.fresh()
    await bus.declare([TAP])
    config = IngressSettings(
        appid=APPID,
        token=Secret(TOKEN),
        aes_key=None if mode == "plain" else Secret(AES_KEY),
        push_mode=mode,
        push_format=fmt,
        decision_budget_ms=1,  # nobody decides here: answer at once
    )
    app = create_app(config, bus=bus, store=MemoryStore(prefix="fuzz:"))
    async with TestClient(TestServer(app)) as client:
        yield client, bus


@contextlib.contextmanager
def serving(
    mode: Mode, fmt: codec.Format
) -> Iterator[tuple[asyncio.Runner, TestClient, MemoryBus]]:
    with asyncio.Runner() as runner:
        scope = served(mode, fmt)
        client, bus = runner.run(scope.__aenter__())
        try:
            yield runner, client, bus
        finally:
            runner.run(scope.__aexit__(None, None, None))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES)
def test_no_500_no_crash_nothing_unsigned_published(mode: Mode, fmt: codec.Format) -> None:
    with serving(mode, fmt) as (runner, client, bus):

        def published() -> int:
            return len(bus.broker.queues[TAP.name].ready)

        async def post(pairs: list[tuple[str, str]], body: bytes, content_type: str) -> int:
            headers = {"Content-Type": content_type} if content_type else {}
            resp = await client.post("/wechat", params=pairs, data=body, headers=headers)
            await resp.read()
            return resp.status

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=EXAMPLES <= 100,  # the same cases in every `make test`
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(case=requests(mode, fmt))
        def check(case: tuple[list[tuple[str, str]], bytes, str]) -> None:
            pairs, body, content_type = case
            before = published()
            status = runner.run(post(pairs, body, content_type))
            assert status in ANSWERS, status
            added = published() - before
            assert added <= 1
            if added:
                assert signed(pairs, body, mode), (pairs, body)

        check()
