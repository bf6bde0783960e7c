"""Each service of a local run as its own broker and Redis user, as in the prod overlay.

At every start ``wxkf up`` makes (or gives a new password to) the users of
:mod:`libs.common.access` with the run's admin URLs (``WXKF_BUS_URL``, ``WXKF_STORE_URL``),
declares wxkf's whole topology itself, and starts each service with its own URLs and
``WXKF_BUS_DECLARE=own``. The broker's users are made with ``rabbitmqctl`` (as ``make
services`` uses it); where it cannot be run, the services keep the admin URLs, and the start
says so.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import Sequence
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from libs.common import bus as bus_lib
from libs.common.access import (
    broker_permissions,
    store_acl,
    topic_permissions,
    user_name,
)
from libs.common.topology import SERVICES, QueueSpec, Service

CTL_TIMEOUT_S = 60.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class UsersUnavailable(Exception):
    """The run's users could not be made; the message says why."""


class ServiceUrls(msgspec.Struct, frozen=True, kw_only=True):
    bus_url: str
    store_url: str

    def env(self) -> dict[str, str]:
        return {
            "WXKF_BUS_URL": self.bus_url,
            "WXKF_STORE_URL": self.store_url,
            "WXKF_BUS_DECLARE": "own",
        }


def with_user(url: str, user: str, password: str) -> str:
    """``url`` with its credentials replaced by ``user`` and ``password``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


async def rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise UsersUnavailable("rabbitmqctl is not on PATH")
    proc = await asyncio.create_subprocess_exec(
        exe,
        "-q",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CTL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise UsersUnavailable(f"rabbitmqctl {args[0]} timed out") from None
    if proc.returncode != 0:
        why = (err or out).decode(errors="replace").strip().splitlines()
        raise UsersUnavailable(f"rabbitmqctl {args[0]}: {why[-1] if why else proc.returncode}")


async def _broker_user(service: Service, name: str, password: str, vhost: str) -> None:
    try:
        await rabbitmqctl("add_user", name, password)
    except UsersUnavailable as exc:
        if "already exists" not in str(exc):
            raise
        await rabbitmqctl("change_password", name, password)
        # Topic permissions are per exchange: none of an earlier run's is left behind.
        await rabbitmqctl("clear_topic_permissions", "-p", vhost, name)
    allowed = broker_permissions(service)
    await rabbitmqctl(
        "set_permissions", "-p", vhost, name, allowed.configure, allowed.write, allowed.read
    )
    for topic in topic_permissions(service):
        await rabbitmqctl(
            "set_topic_permissions", "-p", vhost, name, topic.exchange, topic.write, topic.read
        )


async def _store_user(admin_url: str, service: Service, name: str, password: str) -> None:
    if not admin_url.startswith(("redis://", "rediss://")):
        raise UsersUnavailable("Redis ACL users are made for redis:// store URLs only")
    client = aioredis.Redis.from_url(admin_url)
    try:
        # redis-py types execute_command loosely; ACL rules pass through as given.
        await client.execute_command(  # type: ignore[no-untyped-call, unused-ignore]
            "ACL", "SETUSER", name, "reset", "on", f">{password}", *store_acl(service)
        )
    except RedisError as exc:
        raise UsersUnavailable(f"Redis ACL SETUSER {name}: {exc}") from None
    finally:
        await client.aclose()


async def provision(
    bus_url: str,
    store_url: str,
    queues: Sequence[QueueSpec],
    *,
    suffix: str = "",
) -> dict[Service, ServiceUrls]:
    """Make every service's users (named ``wxkf-<service><suffix>``) and declare the whole
    topology with the admin URL; each service's own URLs. Raises :class:`UsersUnavailable`."""
    if urlsplit(bus_url).hostname not in LOOPBACK:
        # rabbitmqctl speaks to the broker of this machine, which would not be the run's.
        raise UsersUnavailable("the broker is not on this machine")
    admin = await bus_lib.connect(bus_url, name="wxkf-up")
    try:
        await admin.declare(queues)
    finally:
        await admin.close()
    urls: dict[Service, ServiceUrls] = {}
    vhost = vhost_of(bus_url)
    for service in SERVICES:
        # Hex: a password that starts with "-" would read as an option of rabbitmqctl.
        name, password = user_name(service) + suffix, secrets.token_hex(20)
        await _store_user(store_url, service, name, password)
        await _broker_user(service, name, password, vhost)
        urls[service] = ServiceUrls(
            bus_url=with_user(bus_url, name, password),
            store_url=with_user(store_url, name, password),
        )
    return urls
