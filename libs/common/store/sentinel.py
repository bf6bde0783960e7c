"""Redis behind Sentinel: the ``redis+sentinel://`` URL and a client that follows failovers.

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[/DB][?sentinel_password=P]

The hosts are the sentinels (port 26379 unless given), ``MASTER`` the name they monitor, the
user info the credentials of the Redis servers themselves and ``sentinel_password`` those of
the sentinels when they require one. Name every sentinel (each pod, not one Service in front
of them): the client asks them in turn, so an unreachable one costs one timeout.

The client asks the sentinels for the current primary whenever it opens a connection. A
write on a connection to a primary that was demoted answers READONLY (it did not run): that
connection is dropped, the store's one retry of what never ran reconnects to the new
primary, and the pool drops its other idle connections to the old one. Until that first
write a read may still be served by the demoted primary, a moment's stale read; writes never
land on a replica.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError

from libs.common.store.connections import NotSent, NotSentMixin

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379
_OPTIONS = frozenset({"sentinel_password"})


class SentinelTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where a ``redis+sentinel://`` URL points, and with which credentials."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def describe(self) -> str:
        """For errors and logs: never a credential."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinel {self.master} via {hosts}/{self.db}"


def parse(url: str) -> SentinelTarget:
    """The target of ``url``; :class:`ValueError` naming what is wrong (never a password)."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        raise ValueError(f"not a {SCHEME}:// URL")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    sentinels = tuple(_address(n, item) for n, item in enumerate(hostlist.split(","), 1))
    path = [segment for segment in parts.path.split("/") if segment]
    if not path:
        raise ValueError("the URL names no master: add /MASTER after the sentinels")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("the path must be /MASTER or /MASTER/DB with DB a number")
    options = _query(parts.query)
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        name = repr(unknown[0]) if unknown[0].isidentifier() else "in the query"
        raise ValueError(f"unknown option {name}: only sentinel_password is known")
    username, password = _credentials(userinfo)
    return SentinelTarget(
        sentinels=sentinels,
        master=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=options.get("sentinel_password"),
    )


def _query(text: str) -> dict[str, str]:
    # Percent-decoding only: a '+' in a password is a '+', not a space (as parse_qs has it).
    pairs = (item.partition("=") for item in text.split("&") if item)
    return {unquote(key): unquote(value) for key, _, value in pairs}


def _address(n: int, item: str) -> tuple[str, int]:
    # Errors name the address by its place, never by its text: in a mistyped URL a password
    # can end up where a host or port should be.
    host, colon, port = item.strip().rpartition(":")
    if not colon:
        host, port = port, ""
    host = host.strip("[]")
    if not host:
        raise ValueError(f"sentinel address {n} has no host")
    if port and not port.isdigit():
        raise ValueError(f"sentinel address {n} has a port that is not a number")
    return host, int(port) if port else DEFAULT_PORT


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) if colon and password else None


def explain(exc: BaseException) -> str | None:
    """A short reason for the errors that only Sentinel raises (redis-py's own text lists
    every sentinel client's full repr)."""
    if isinstance(exc, MasterNotFoundError) or isinstance(exc.__cause__, MasterNotFoundError):
        return "no sentinel named its primary (sentinels unreachable, or no such master)"
    return None


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A sentinel-managed pool that waits for a free connection instead of refusing one."""


class _PrimaryConnection(NotSentMixin, SentinelManagedConnection):
    """Asks the sentinels for the primary on every (re)connect, once.

    redis-py's own sentinel connection resolves the primary only in ``connect()``, but a
    command sent on a dropped connection reconnects through ``connect_check_health()``: after
    a demotion the retry went straight back to the old primary's address and failed again.
    A READONLY answer (the primary was demoted; the command did not run) is :class:`NotSent`,
    so the store's retry sends it to the new primary.
    """

    async def _connect_retry(self) -> None:
        # Only the override below resolves the primary (redis-py's version asks as well).
        await self.connect_check_health(
            check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected:
            try:
                self.host, self.port = await self.connection_pool.get_master_address()
            except RedisConnectionError as exc:
                raise NotSent(str(exc)) from exc
        await super().connect_check_health(
            check_health=check_health, retry_socket_connect=retry_socket_connect
        )

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - redis-py's signature, overridden
        *,
        disconnect_on_error: float | None = True,  # sic: redis-py's annotation
        push_request: bool | None = False,
    ) -> Any:
        try:
            # Past SentinelManagedConnection's own READONLY handling, to the plain read.
            return await super(SentinelManagedConnection, self).read_response(
                disable_decoding=disable_decoding,
                timeout=timeout,
                disconnect_on_error=bool(disconnect_on_error),
                push_request=push_request,
            )
        except ReadOnlyError:
            await self.disconnect()
            raise NotSent("the primary was demoted to a replica; the command did not run") from None


def client(target: SentinelTarget, **connection: Any) -> tuple[aioredis.Redis, Sentinel]:
    """A client of the current primary, and the sentinels it asks (to close after it);
    ``connection`` as for a Redis connection pool.

    The sentinels get the same socket timeouts, so an unreachable sentinel costs at most one
    timeout before the next one is asked.
    """
    timeouts = {key: value for key, value in connection.items() if key.startswith("socket_")}
    # No retries per sentinel: the next sentinel in the list is the retry.
    asking = {**timeouts, "password": target.sentinel_password, "retry": Retry(NoBackoff(), 0)}
    # redis-py before 8 leaves Sentinel.__init__ unannotated; 8 annotates it.
    manager = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        list(target.sentinels), sentinel_kwargs=asking
    )
    primary = manager.master_for(
        target.master,
        connection_pool_class=_BlockingSentinelPool,
        connection_class=_PrimaryConnection,
        db=target.db,
        username=target.username,
        password=target.password,
        **connection,
    )
    return primary, manager
