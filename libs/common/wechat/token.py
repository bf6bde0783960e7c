"""The access token, shared by every replica of every service that calls WeChat.

One token lives in the store under :func:`token_key`. A caller uses its process-local copy
until fewer than ``refresh_margin_s`` (5 min) remain, then re-reads the store; when the shared
copy is stale too, exactly one replica refreshes it (a store lock with an owner and a TTL)
through the stable-token endpoint in normal mode, while the others poll the store for the new
token up to a deadline. Within one process, one task refreshes and the others wait for it.

When WeChat refuses a token (40001/40014/42001), :meth:`AccessToken.call` refreshes and retries
the call once. The refresh first re-reads the store (another replica may already have
replaced the token), then asks for the token in normal mode, and forces a new one only when
the normal call returns the very token WeChat refused: forced refreshes are scarce (20 a day,
at least 30 s apart, WECHAT.md §10.2), so they are rationed across replicas through the store.

The app secret is only ever put in the stable-token request body; it appears in no log line,
error or repr.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import structlog

from libs.common.settings import Secret
from libs.common.store import Store, StoreError
from libs.common.wechat import apimetrics
from libs.common.wechat.api import ApiClient, TokenGrant
from libs.common.wechat.apierrors import TokenUnavailable, WeChatApiError, WeChatCallError

log = structlog.get_logger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]

REFRESH_MARGIN_S = 300.0
"""WeChat rotates a stable token 5 minutes before it expires; refresh from then on."""
FORCED_SPACING_S = 30.0
FORCED_PER_DAY = 20
_CHINA_UTC_OFFSET_S = 8 * 3600
"""WeChat's daily quotas follow Beijing time."""


def token_key(appid: str) -> str:
    """The store key of the shared token; the media service reads the same one."""
    return f"wechat:token:{appid}"


class CachedToken(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    expires_at: float
    """Unix seconds (in the clock of whoever fetched it)."""

    def __repr__(self) -> str:
        return f"CachedToken(access_token='***', expires_at={self.expires_at})"


_decoder = msgspec.json.Decoder(CachedToken)


class AccessToken:
    """The shared access token of one mini program (see the module docstring)."""

    def __init__(
        self,
        api: ApiClient,
        store: Store,
        *,
        appid: str,
        secret: Secret,
        clock: Clock = time.time,
        service: str = "wechat",
        refresh_margin_s: float = REFRESH_MARGIN_S,
        lock_ttl_s: float = 15.0,
        wait_s: float | None = None,
        forced_spacing_s: float = FORCED_SPACING_S,
        forced_per_day: int = FORCED_PER_DAY,
    ) -> None:
        self._api = api
        self._store = store
        self._appid = appid
        self._secret = secret
        self._clock = clock
        self._service = service
        self._margin = refresh_margin_s
        self._lock_ttl = lock_ttl_s
        # Long enough for the lock holder to finish (or for its lock to expire if it died).
        self._wait_s = wait_s if wait_s is not None else lock_ttl_s + 5.0
        self._forced_spacing = forced_spacing_s
        self._forced_per_day = forced_per_day
        self._key = token_key(appid)
        self._owner = uuid.uuid4().hex
        self._local: CachedToken | None = None
        self._refreshing = asyncio.Lock()

    def __repr__(self) -> str:
        return f"AccessToken(appid={self._appid!r})"

    async def get(self) -> str:
        """A token with more than the margin left, refreshing it first if needed."""
        local = self._local
        if local is not None and self._clock() < local.expires_at - self._margin:
            return local.access_token
        try:
            return await self.refresh()
        except (StoreError, TokenUnavailable) as exc:
            # Still valid, only inside the margin: better than failing the call.
            local = self._local
            if local is not None and self._clock() < local.expires_at:
                log.warning("wechat.token_refresh_deferred", error=str(exc))
                return local.access_token
            raise

    async def call(self, fn: Callable[[str], Awaitable[T]]) -> T:
        """Run ``fn(token)``; if WeChat refuses the token, refresh and run it once more."""
        token = await self.get()
        try:
            return await fn(token)
        except WeChatApiError as exc:
            if exc.kind != "token":
                raise
            log.info("wechat.token_rejected", errcode=exc.errcode, path=exc.path)
        return await fn(await self.refresh(rejected=token))

    async def refresh(self, *, rejected: str | None = None) -> str:
        """A fresh token; ``rejected`` is one WeChat just refused (never returned again)."""
        async with self._refreshing:
            if self._usable(self._local, rejected):
                assert self._local is not None
                return self._local.access_token
            deadline = time.monotonic() + self._wait_s
            while True:
                shared = await self._read()
                if self._usable(shared, rejected):
                    assert shared is not None
                    self._local = shared
                    return shared.access_token
                if await self._store.acquire_lock(
                    self._lock_key, self._owner, ttl_s=self._lock_ttl
                ):
                    try:
                        return await self._refresh_locked(rejected)
                    finally:
                        await self._store.release_lock(self._lock_key, self._owner)
                token = await self._wait_for_other(rejected, deadline)
                if token is not None:
                    return token

    # -- internals ------------------------------------------------------------------------------

    @property
    def _lock_key(self) -> str:
        return self._key + ":lock"

    def _usable(self, token: CachedToken | None, rejected: str | None) -> bool:
        return (
            token is not None
            and token.access_token != rejected
            and self._clock() < token.expires_at - self._margin
        )

    async def _read(self) -> CachedToken | None:
        raw = await self._store.get(self._key)
        if raw is None:
            return None
        try:
            return _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("wechat.token_unreadable", key=self._key)
            return None

    async def _wait_for_other(self, rejected: str | None, deadline: float) -> str | None:
        """Poll the store while another replica refreshes; None to try the lock again."""
        pause = 0.02
        while time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
            shared = await self._read()
            if self._usable(shared, rejected):
                assert shared is not None
                self._local = shared
                apimetrics.TOKEN_WAITS.labels(self._service, "adopted").inc()
                return shared.access_token
            if not await self._lock_held():
                return None
        apimetrics.TOKEN_WAITS.labels(self._service, "timeout").inc()
        raise TokenUnavailable(
            f"no new access token within {self._wait_s:g} s of waiting for another replica",
            kind="transient",
        )

    async def _lock_held(self) -> bool:
        return await self._store.get(self._lock_key) is not None

    async def _refresh_locked(self, rejected: str | None) -> str:
        # Another replica may have finished between our read and our lock.
        shared = await self._read()
        if self._usable(shared, rejected):
            assert shared is not None
            self._local = shared
            return shared.access_token
        grant = await self._stable_token(force=False)
        if rejected is not None and grant.access_token == rejected:
            apimetrics.TOKEN_REFRESHES.labels(self._service, "normal", "unchanged").inc()
            if not await self._may_force():
                raise TokenUnavailable(
                    "WeChat refused the access token, returns it unchanged, and a forced "
                    "refresh is not allowed yet (20 a day, 30 s apart)",
                    kind="transient",
                )
            grant = await self._stable_token(force=True)
            if grant.access_token == rejected:
                apimetrics.TOKEN_REFRESHES.labels(self._service, "forced", "unchanged").inc()
                raise TokenUnavailable(
                    "a forced refresh returned the refused access token", kind="transient"
                )
            apimetrics.TOKEN_REFRESHES.labels(self._service, "forced", "ok").inc()
            log.warning("wechat.token_forced_refresh", appid=self._appid)
        else:
            apimetrics.TOKEN_REFRESHES.labels(self._service, "normal", "ok").inc()
        now = self._clock()
        cached = CachedToken(access_token=grant.access_token, expires_at=now + grant.expires_in)
        await self._store.set(
            self._key, msgspec.json.encode(cached), ttl_s=max(1.0, float(grant.expires_in))
        )
        self._local = cached
        log.info("wechat.token_refreshed", appid=self._appid, expires_in=grant.expires_in)
        return cached.access_token

    async def _stable_token(self, *, force: bool) -> TokenGrant:
        kind = "forced" if force else "normal"
        try:
            return await self._api.stable_token(self._appid, str(self._secret), force_refresh=force)
        except WeChatCallError as exc:
            apimetrics.TOKEN_REFRESHES.labels(self._service, kind, "error").inc()
            log.error("wechat.token_refresh_failed", kind=kind, error=str(exc))
            # Busy or rate limited may pass; a bad AppID, secret or IP needs a person.
            raise TokenUnavailable(
                f"{kind} token refresh failed: {exc}",
                kind="transient" if exc.kind == "transient" else "permanent",
                errcode=exc.errcode,
            ) from None

    async def _may_force(self) -> bool:
        """Take one of the day's forced refreshes, at most one per spacing, across replicas."""
        spacing_key = self._key + ":forced"
        if not await self._store.set_if_absent(spacing_key, b"1", ttl_s=self._forced_spacing):
            log.warning("wechat.token_force_too_soon", spacing_s=self._forced_spacing)
            return False
        day = int((self._clock() + _CHINA_UTC_OFFSET_S) // 86400)
        for n in range(self._forced_per_day):
            slot = f"{self._key}:forced:{day}:{n}"
            if await self._store.set_if_absent(slot, b"1", ttl_s=2 * 86400):
                return True
        log.error("wechat.token_force_budget_spent", per_day=self._forced_per_day)
        return False
