"""A broker URL that names every node of a cluster, and a connection that tries them in turn.

    amqp://user:pass@rabbit-0:5672,rabbit-1:5672,rabbit-2:5672/vhost?heartbeat=30

The nodes share the credentials, the vhost and the query (they are one cluster). A
connection, and every reconnect after a node is lost, tries the node after the one it last
reached first and goes round the list, so the services move to a surviving node by
themselves. aio-pika takes one host; the rotation is an aiormq transport factory, the hook
aiormq offers for how a connection's socket is opened.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiormq
from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL

DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}


def parse_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """``(the URL with its first node only, every node as (host, port))``; ValueError naming
    what is wrong (never the password)."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"a broker URL starts with amqp:// or amqps://, not {parts.scheme}://")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for position, item in enumerate(hostlist.split(","), start=1):
        host, port = _node(item, parts.scheme, position)
        nodes.append((host, port))
    first_host, first_port = nodes[0]
    netloc = (userinfo + "@" if userinfo else "") + _join(first_host, first_port)
    return urlunsplit(parts._replace(netloc=netloc)), nodes


def _node(item: str, scheme: str, position: int) -> tuple[str, int]:
    item = item.strip()
    if not item:
        raise ValueError(f"node {position} of the broker URL is empty")
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"node {position} of the broker URL has no host")
    if not port_text:
        return host, DEFAULT_PORTS[scheme]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"node {position} of the broker URL has a bad port {port_text!r}")
    return host, int(port_text)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe(nodes: list[tuple[str, int]]) -> str:
    return ",".join(_join(host, port) for host, port in nodes)


class NodeRotation(TransportFactory):
    """Opens a connection's socket to the next node that answers (see the module docstring)."""

    def __init__(self, nodes: list[tuple[str, int]], *, tls: bool) -> None:
        self.nodes = nodes
        self.inner: TransportFactory = TLSTransportFactory() if tls else TCPTransportFactory()
        self.current = -1
        """The index of the node reached last (-1 before the first)."""

    async def create(self, url: URL, **kwargs: Any) -> Any:
        last: Exception | None = None
        count = len(self.nodes)
        for step in range(1, count + 1):
            index = (self.current + step) % count
            host, port = self.nodes[index]
            try:
                opened = await self.inner.create(url.with_host(host).with_port(port), **kwargs)
            except aiormq.exceptions.AMQPConnectionError as exc:
                last = exc
                continue
            self.current = index
            return opened
        assert last is not None
        raise last

    @property
    def node(self) -> str:
        """The node reached last, as ``host:port``."""
        return _join(*self.nodes[self.current]) if self.current >= 0 else ""
