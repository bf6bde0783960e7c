"""The shared access token over the memory store: one refresh for many callers, forced
refreshes only when WeChat hands back the refused token, nothing secret in logs or errors.

The stable-token endpoint is a small app whose answers each test scripts; the real rules are
exercised against the simulator and Redis in tests/integration/common/.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from libs.common.settings import Secret
from libs.common.store.memory import MemoryStore
from libs.common.wechat import api
from libs.common.wechat.apierrors import TokenUnavailable, WeChatApiError
from libs.common.wechat.token import AccessToken, CachedToken, token_key

APPID = "wxTOKENTEST"
SECRET = Secret("s3cr3t-never-in-logs")


class Endpoint:
    """A stable-token endpoint: normal calls return the current token, forced ones a new one."""

    def __init__(self) -> None:
        self.serial = itertools.count(1)
        self.current = self._next()
        self.calls: list[bool] = []
        """force_refresh of each call, in order."""
        self.errcode = 0
        self.expires_in = 7200
        self.delay_s = 0.0
        self.rotate_on_normal = False

    def _next(self) -> str:
        return f"TOKEN-{next(self.serial)}-" + "x" * 40

    async def handle(self, request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        assert body["secret"] == str(SECRET)
        self.calls.append(bool(body.get("force_refresh")))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.errcode:
            return web.json_response({"errcode": self.errcode, "errmsg": "no rid: 9-9"})
        if body.get("force_refresh") or self.rotate_on_normal:
            self.current = self._next()
        return web.json_response({"access_token": self.current, "expires_in": self.expires_in})

    @property
    def normal(self) -> int:
        return self.calls.count(False)

    @property
    def forced(self) -> int:
        return self.calls.count(True)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def endpoint() -> Endpoint:
    return Endpoint()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(prefix="t:")


@pytest.fixture
async def client(endpoint: Endpoint) -> AsyncIterator[api.ApiClient]:
    app = web.Application()
    app.router.add_post(api.STABLE_TOKEN_PATH, endpoint.handle)
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield api.ApiClient(session, base_url=str(server.make_url("")), timeout_s=5)
    await server.close()


def make(client: api.ApiClient, store: MemoryStore, clock: Clock, **kw: Any) -> AccessToken:
    return AccessToken(client, store, appid=APPID, secret=SECRET, clock=clock, **kw)


def refreshes(kind: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "wxkf_wechat_token_refreshes_total",
        {"service": "wechat", "kind": kind, "outcome": outcome},
    )
    return value or 0.0


def refused(code: int = 40001) -> WeChatApiError:
    return WeChatApiError(code, "invalid credential", api.SEND_PATH)


# --- getting a token -----------------------------------------------------------------------------


async def test_one_refresh_for_many_concurrent_callers(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    endpoint.delay_s = 0.05
    token = make(client, store, clock)
    got = await asyncio.gather(*(token.get() for _ in range(20)))
    assert set(got) == {endpoint.current}
    assert endpoint.calls == [False]


async def test_replicas_share_one_token_and_one_refresh(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    endpoint.delay_s = 0.1
    replicas = [make(client, store, clock) for _ in range(3)]
    got = await asyncio.gather(*(r.get() for r in replicas for _ in range(5)))
    assert set(got) == {endpoint.current}
    assert endpoint.calls == [False]
    stored = msgspec.json.decode(await store.get(token_key(APPID)) or b"", type=CachedToken)
    assert stored.access_token == endpoint.current
    assert stored.expires_at == clock.now + 7200


async def test_the_local_copy_is_used_until_the_margin(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    token = make(client, store, clock)
    first = await token.get()
    clock.now += 7200 - 301
    assert await token.get() == first
    assert endpoint.calls == [False]
    endpoint.rotate_on_normal = True
    clock.now += 2  # 299 s left: inside the 5-minute margin
    second = await token.get()
    assert second != first
    assert endpoint.calls == [False, False]


async def test_a_replica_adopts_the_token_another_refreshed(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    a, b = make(client, store, clock), make(client, store, clock)
    await a.get()
    await b.get()
    assert endpoint.calls == [False]
    endpoint.rotate_on_normal = True
    clock.now += 7000
    fresh = await a.get()
    assert await b.get() == fresh
    assert endpoint.calls == [False, False]


async def test_a_dead_lock_holder_delays_but_does_not_block(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    # A replica took the lock and died: its lock expires after its TTL.
    assert await store.acquire_lock(token_key(APPID) + ":lock", "dead-replica", ttl_s=0.3)
    token = make(client, store, clock, wait_s=5.0)
    assert await token.get() == endpoint.current
    assert endpoint.calls == [False]


async def test_waiting_for_a_stuck_refresh_gives_up_at_the_deadline(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    assert await store.acquire_lock(token_key(APPID) + ":lock", "slow-replica", ttl_s=60)
    token = make(client, store, clock, wait_s=0.2)
    with pytest.raises(TokenUnavailable) as info:
        await token.get()
    assert info.value.kind == "transient"
    assert endpoint.calls == []


async def test_a_refresh_failure_is_typed_and_never_shows_the_secret(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    token = make(client, store, clock)
    endpoint.errcode = 40125
    before = refreshes("normal", "error")
    with capture_logs() as logs, pytest.raises(TokenUnavailable) as info:
        await token.get()
    assert info.value.kind == "permanent"
    assert info.value.errcode == 40125
    assert str(SECRET) not in str(info.value)
    assert all(str(SECRET) not in repr(entry) for entry in logs)
    assert str(SECRET) not in repr(token)
    assert refreshes("normal", "error") == before + 1
    endpoint.errcode = -1
    with pytest.raises(TokenUnavailable) as busy:
        await token.get()
    assert busy.value.kind == "transient"
    # The lock was released: once WeChat answers, the next caller refreshes.
    endpoint.errcode = 0
    assert await token.get() == endpoint.current


async def test_a_token_inside_the_margin_is_used_when_refreshing_fails(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    token = make(client, store, clock)
    first = await token.get()
    clock.now += 7200 - 100
    endpoint.errcode = -1
    assert await token.get() == first
    clock.now += 101  # now really expired
    with pytest.raises(TokenUnavailable):
        await token.get()


async def test_an_unreadable_shared_value_is_replaced(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    await store.set(token_key(APPID), b"not json")
    assert await make(client, store, clock).get() == endpoint.current


def test_reprs_hide_the_token() -> None:
    cached = CachedToken(access_token="SECRET-TOKEN", expires_at=1.0)
    assert "SECRET-TOKEN" not in repr(cached)
    assert "SECRET-TOKEN" not in repr(api.TokenGrant(access_token="SECRET-TOKEN", expires_in=1))


# --- a refused token -----------------------------------------------------------------------------


async def test_refused_token_forces_one_refresh_when_normal_returns_it_again(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    token = make(client, store, clock)
    used: list[str] = []

    async def send(t: str) -> str:
        used.append(t)
        if len(used) == 1:
            raise refused()
        return "sent"

    forced_before = refreshes("forced", "ok")
    assert await token.call(send) == "sent"
    assert used[0] != used[1]
    assert used[1] == endpoint.current
    assert endpoint.calls == [False, False, True]
    assert refreshes("forced", "ok") == forced_before + 1


@pytest.mark.parametrize("code", [40001, 40014, 42001])
async def test_refused_token_with_a_new_one_from_normal_mode_is_not_forced(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint, code: int
) -> None:
    token = make(client, store, clock)
    seen: list[str] = []

    async def send(t: str) -> None:
        seen.append(t)
        if len(seen) == 1:
            endpoint.rotate_on_normal = True  # WeChat expired it and issues a new one
            raise refused(code)

    await token.call(send)
    assert seen[0] != seen[1]
    assert endpoint.forced == 0


async def test_refused_token_already_replaced_by_another_replica_costs_no_call(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    a, b = make(client, store, clock), make(client, store, clock)
    old = await a.get()
    await b.get()
    endpoint.rotate_on_normal = True
    await a.refresh(rejected=old)  # replica a learned first and refreshed
    calls = len(endpoint.calls)
    seen: list[str] = []

    async def send(t: str) -> None:
        seen.append(t)
        if t == old:
            raise refused(42001)

    await b.call(send)
    assert seen == [old, endpoint.current]
    assert len(endpoint.calls) == calls


async def test_many_callers_refused_together_cause_one_refresh(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    token = make(client, store, clock)
    old = await token.get()
    endpoint.rotate_on_normal = True
    endpoint.delay_s = 0.05

    async def send(t: str) -> str:
        if t == old:
            raise refused(42001)
        return t

    results = await asyncio.gather(*(token.call(send) for _ in range(20)))
    assert len(set(results)) == 1
    assert endpoint.calls == [False, False]


async def test_a_second_refusal_is_not_retried_again(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    token = make(client, store, clock)
    attempts = 0

    async def send(t: str) -> None:
        nonlocal attempts
        attempts += 1
        raise refused()

    with pytest.raises(WeChatApiError):
        await token.call(send)
    assert attempts == 2


async def test_other_errors_pass_through_without_a_refresh(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    token = make(client, store, clock)

    async def send(t: str) -> None:
        raise WeChatApiError(45047, "out of response count limit", api.SEND_PATH)

    with pytest.raises(WeChatApiError):
        await token.call(send)
    assert endpoint.calls == [False]


async def test_forced_refreshes_are_spaced_across_replicas(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    a, b = make(client, store, clock), make(client, store, clock)
    first = await a.get()
    second = await a.refresh(rejected=first)
    assert endpoint.forced == 1
    # The new token is refused too, within 30 s: normal mode returns it, forcing is not allowed.
    with pytest.raises(TokenUnavailable, match="not allowed yet") as info:
        await b.refresh(rejected=second)
    assert info.value.kind == "transient"
    assert endpoint.forced == 1


async def test_forced_refreshes_stop_at_the_daily_budget(
    client: api.ApiClient, clock: Clock, endpoint: Endpoint
) -> None:
    store = MemoryStore(prefix="t:", clock=clock)  # key expiry follows the test's clock
    token = make(client, store, clock, forced_per_day=2)
    current = await token.get()
    for _ in range(2):
        current = await token.refresh(rejected=current)
        clock.now += 31  # past the spacing
    with pytest.raises(TokenUnavailable):
        await token.refresh(rejected=current)
    assert endpoint.forced == 2
    clock.now += 86400  # the next day (Beijing time) has a fresh budget
    assert await token.refresh(rejected=current) != current
    assert endpoint.forced == 3


async def test_a_forced_refresh_that_returns_the_refused_token_fails(
    client: api.ApiClient, store: MemoryStore, clock: Clock, endpoint: Endpoint
) -> None:
    token = make(client, store, clock)
    current = await token.get()
    endpoint.serial = itertools.repeat(int(current.split("-")[1]))  # WeChat ignores the force
    with pytest.raises(TokenUnavailable, match="forced refresh returned"):
        await token.refresh(rejected=current)
