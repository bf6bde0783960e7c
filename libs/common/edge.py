"""Who may hold a connection to a public port, and for how long, before a request is read.

A request costs a handler nothing until its headers have arrived, but the connection that
carries it costs a file descriptor and a parser for as long as the client likes. At the edge
each connection is therefore in one of three states, each with its bound:

- *idle* (just accepted, or answered and kept alive): the first byte of the next request must
  come within ``idle_timeout_s``, else the connection is closed;
- *reading* (bytes of a request have come, its handler has not started): the headers must be
  complete within ``read_timeout_s`` of the first byte, else the connection is closed (the
  handler bounds its own body read the same way);
- *busy* (a handler runs): no bound here; the handler has its own.

Besides, no source address holds more than ``per_source`` connections at once (0: no cap):
the next one is closed as soon as it is accepted. The cap counts TCP peers, so behind a
proxy that does not keep the client's address every connection is the proxy's.

An app opts in with :func:`install`; :func:`libs.common.runner.running` then listens for it
through :class:`GuardedSite`. Without it (tests on ``TestServer``), the middleware does nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Callable
from typing import Literal, cast

import msgspec
import structlog
from aiohttp import web
from prometheus_client import Counter, Gauge

from libs.common.keys import SERVICE
from libs.common.web import Handler

log = structlog.get_logger(__name__)

Reason = Literal["per_source", "idle", "read_timeout"]

CLOSED = Counter(
    "wxkf_http_connections_closed_total",
    "Connections the edge closed before a request of theirs was handled, by reason: "
    "per_source (the address held its cap), idle, read_timeout (headers too slow).",
    ["service", "reason"],
)
OPEN = Gauge(
    "wxkf_http_connections_open",
    "Connections open on a guarded port.",
    ["service"],
)


class EdgeLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The bounds of a public port (see the module docstring)."""

    read_timeout_s: float
    idle_timeout_s: float
    per_source: int


class _Conn(asyncio.Protocol):
    """One accepted connection: forwards everything to aiohttp's own protocol, and keeps time."""

    __slots__ = ("busy", "edge", "host", "inner", "reading", "since", "timer", "transport")

    def __init__(self, edge: Edge, inner: asyncio.Protocol) -> None:
        self.edge = edge
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.host = ""
        self.busy = 0
        self.reading = False
        self.since = 0.0
        """The loop's time at the first byte of the request being read (or handled)."""
        self.timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.edge.admit(host):
            self.edge.closed("per_source")
            transport.abort()
            return
        self.transport, self.host = transport, host
        self.edge.conns[transport] = self
        self._arm(self.edge.limits.idle_timeout_s)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        if not self.busy and not self.reading:
            self.reading = True
            self.since = asyncio.get_running_loop().time()
            self._arm(self.edge.limits.read_timeout_s)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.transport is not None else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self._disarm()
        self.edge.release(self.transport, self.host)
        self.transport = None
        self.inner.connection_lost(exc)

    # What the middleware reports

    def begin(self) -> None:
        self.busy += 1
        self.reading = False
        self._disarm()

    def end(self) -> None:
        self.busy -= 1
        if not self.busy and self.transport is not None:
            self._arm(self.edge.limits.idle_timeout_s)

    # The timer

    def _arm(self, after_s: float) -> None:
        self._disarm()
        self.timer = asyncio.get_running_loop().call_later(after_s, self._expire)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        if self.busy or self.transport is None:
            return
        self.edge.closed("read_timeout" if self.reading else "idle")
        self.transport.abort()


class Edge:
    """The connections of one guarded port, counted by source address."""

    def __init__(self, service: str, limits: EdgeLimits) -> None:
        self.service = service
        self.limits = limits
        self.conns: dict[asyncio.BaseTransport, _Conn] = {}
        self.by_source: Tally[str] = Tally()
        self._open = OPEN.labels(service)

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], _Conn]:
        return lambda: _Conn(self, inner())

    def admit(self, host: str) -> bool:
        cap = self.limits.per_source
        if cap and self.by_source[host] >= cap:
            return False
        self.by_source[host] += 1
        self._open.inc()
        return True

    def release(self, transport: asyncio.BaseTransport, host: str) -> None:
        self.conns.pop(transport, None)
        self.by_source[host] -= 1
        if self.by_source[host] <= 0:
            del self.by_source[host]
        self._open.dec()

    def closed(self, reason: Reason) -> None:
        CLOSED.labels(self.service, reason).inc()
        # Counted; a line per connection closed would feed the flood it reports.
        log.debug("edge.closed", reason=reason)


EDGE = web.AppKey("edge", Edge)
"""The guard of an app's public port (set by :func:`install`)."""

READING_SINCE = web.RequestKey("reading_since", float)
"""On a request through a guarded port: the loop's time when its first byte came, so that a
handler bounds its body read by what is left of ``read_timeout_s`` (headers and body
together), not by a bound of its own after the headers."""


def reading_since(request: web.Request) -> float:
    """When the request's first byte came (now, on an unguarded port)."""
    return request.get(READING_SINCE) or asyncio.get_running_loop().time()


def install(app: web.Application, limits: EdgeLimits) -> None:
    """Guard ``app``'s port with ``limits`` (the runner listens through :class:`GuardedSite`)."""
    app[EDGE] = Edge(app[SERVICE], limits)
    app.middlewares.insert(0, _busy)


@web.middleware
async def _busy(request: web.Request, handler: Handler) -> web.StreamResponse:
    conn = request.app[EDGE].conns.get(request.transport) if request.transport else None
    if conn is None:
        return await handler(request)
    request[READING_SINCE] = conn.since
    conn.begin()
    try:
        return await handler(request)
    finally:
        conn.end()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections are those of an :class:`Edge`."""

    __slots__ = ("_edge", "_host", "_port")

    def __init__(self, runner: web.AppRunner, host: str, port: int, edge: Edge) -> None:
        # A burst of pushes from several WeChat servers should wait in the kernel, not be reset.
        super().__init__(runner, backlog=1024)
        self._host, self._port, self._edge = host, port, edge

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        # As TCPSite.start, with the runner's protocol factory wrapped: BaseSite.start registers
        # the site with its runner, and BaseSite.stop closes ``_server``.
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._edge.protocol_factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
        )
