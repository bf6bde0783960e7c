"""Redis connections whose failures say whether the command may have run.

The store retries a call once when the connection failed, but only when nothing was sent:
redis-py's own retry also resends after the connection broke *after* the command went out
(the server may have run it: a reply-window slot or a rate token taken twice). Here every
failure to connect becomes :class:`NotSent`, and the store's retry covers only that.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class NotSent(RedisConnectionError):
    """The connection failed before the command was written: sending it again is safe."""


class NotSentMixin:
    """Turns a failed connect (refused, unreachable, timed out, handshake refused) into
    :class:`NotSent`: a command is written only on a connection that is up."""

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        try:
            await super().connect_check_health(  # type: ignore[misc]  # a mixin over redis-py's classes
                check_health=check_health, retry_socket_connect=retry_socket_connect
            )
        except NotSent:
            raise
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise NotSent(str(exc)) from exc


class _TcpConnection(NotSentMixin, Connection):
    pass


class _TlsConnection(NotSentMixin, SSLConnection):
    pass


class _UnixConnection(NotSentMixin, UnixDomainSocketConnection):
    pass


_OURS: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _TcpConnection,
    SSLConnection: _TlsConnection,
    UnixDomainSocketConnection: _UnixConnection,
}


def pool_options(url: str, **connection: Any) -> dict[str, Any]:
    """The keyword arguments of a connection pool for ``url`` (``redis://``, ``rediss://``,
    ``unix://``) with ``connection`` added and this module's connection class.

    redis-py's ``from_url`` lets the URL's scheme override the class it is given.
    """
    options = {**connection, **parse_url(url)}
    options["connection_class"] = _OURS[options.get("connection_class", Connection)]
    return options
