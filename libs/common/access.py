"""What each service may do on the broker and in Redis: one user per service, least privilege.

The broker's permissions are RabbitMQ's three regular expressions per user and vhost
(configure, write, read), made here from the topology's names, so that they follow a queue
that is added or renamed. What each operation needs:

- declaring an exchange: *configure* on it;
- declaring a queue: *configure* on it; with a dead-letter exchange, *read* on the queue and
  *write* on that exchange as well;
- binding a queue: *write* on the queue, *read* on the exchange;
- publishing: *write* on the exchange (a reply, through the default exchange: ``amq.default``);
- consuming: *read* on the queue.

A user's *configure* also lets it delete what it may declare: that is why a service declares
only its own queues (and the exchanges, which the consumers' queues bind to) when its user is
limited (``WXKF_BUS_DECLARE=own``). Ingress consumes nothing, so it declares nothing and has
no *configure* at all: until a consumer has declared ``kf.events``, its publishes fail (the
broker closes the channel, 404) and the pushes go to its spool.

*write* on an exchange covers every routing key, so each user also has *topic permissions*
on the topic exchanges it writes to: the routing keys it may publish (and the binding keys
its queues may bind with). Ingress publishes only ``msg.*`` and ``event.*``, the router only
``decision.*`` and ``ext.*`` (and ``send.*`` on ``kf.commands``), the sender ``outbound.*``,
media ``media.*``. The retry and dead-letter exchanges are direct, keyed by queue name: topic
permissions do not apply to them.

In Redis each service's ACL user reaches only the keys under its own prefixes, with the
commands the store client sends (``libs/common/store``: its Lua scripts call ``INFO`` and
``TIME``, the ingress's spool the stream commands).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from libs.common.topology import (
    COMMANDS,
    DEAD,
    EVENTS,
    MEDIA_ARCHIVE,
    RETRY,
    ROUTER_EVENTS,
    SENDER_COMMANDS,
    SENDER_WINDOWS,
    SERVICES,
    QueueSpec,
    Service,
)

EXCHANGES = (EVENTS, COMMANDS, RETRY, DEAD)
DEFAULT_EXCHANGE = "amq.default"
"""How the broker names the default exchange in permissions (direct reply-to answers)."""
REPLY_TO = "amq.rabbitmq.reply-to"

OWN_QUEUES: dict[Service, tuple[QueueSpec, ...]] = {
    "ingress": (),
    "router": (ROUTER_EVENTS,),
    "sender": (SENDER_COMMANDS, SENDER_WINDOWS),
    "media": (MEDIA_ARCHIVE,),
}
"""The queues each service consumes, and so declares."""

PUBLISHES: dict[Service, tuple[str, ...]] = {
    "ingress": (EVENTS,),
    "router": (EVENTS, COMMANDS, RETRY, DEAD, DEFAULT_EXCHANGE),
    "sender": (EVENTS, RETRY, DEAD),
    "media": (EVENTS, RETRY, DEAD),
}
"""Where each service publishes: its facts and commands, its retries and dead letters (the
consumers), the decision's answer (the router, through the default exchange)."""


FACTS: dict[Service, tuple[str, ...]] = {
    "ingress": ("msg", "event"),
    "router": ("decision", "ext"),
    "sender": ("outbound",),
    "media": ("media",),
}
"""The first word of the routing keys each service publishes on ``kf.events`` (the schemas'
``routing_key()``, and the router's ``extension_key``)."""
COMMAND_WORDS: dict[Service, tuple[str, ...]] = {"router": ("send",)}
"""The same on ``kf.commands``: the router's send commands."""

DECLARES_EXCHANGES: tuple[Service, ...] = ("router", "sender", "media")
"""The services that declare the exchanges (those with queues of their own to bind)."""


class BrokerPermissions(msgspec.Struct, frozen=True, kw_only=True):
    """A user's permissions on one vhost, as ``rabbitmqctl set_permissions`` takes them."""

    configure: str
    write: str
    read: str


def _anchored(alternatives: Sequence[str]) -> str:
    return "^(" + "|".join(alternatives) + ")$" if alternatives else "^$"


def _queues(specs: Sequence[QueueSpec]) -> list[str]:
    # The work queue, its dead letters and its delay queues (whose delays are settings).
    return [re.escape(s.name) + r"(\.dlq|\.delay\.[0-9]+ms)?" for s in specs]


def broker_permissions(service: Service) -> BrokerPermissions:
    own = OWN_QUEUES[service]
    queues = _queues(own)
    exchanges = [re.escape(e) for e in EXCHANGES]
    # Own queues bind to their exchange, to the retry exchange (work and delay queues) and
    # to the dead-letter exchange (dead-letter queues).
    bound = sorted({s.exchange for s in own} | ({RETRY, DEAD} if own else set()))
    read = [*queues, *(re.escape(e) for e in bound)]
    if service == "ingress":
        read.append(re.escape(REPLY_TO))  # the decision's answers
    declared = exchanges if service in DECLARES_EXCHANGES else []
    return BrokerPermissions(
        configure=_anchored([*declared, *queues]),
        write=_anchored([*(re.escape(e) for e in PUBLISHES[service]), *queues]),
        read=_anchored(read),
    )


class TopicPermission(msgspec.Struct, frozen=True, kw_only=True):
    """A user's routing keys on one topic exchange, as ``rabbitmqctl set_topic_permissions``
    takes them: ``write`` the keys it may publish, ``read`` the keys its queues may bind."""

    exchange: str
    write: str
    read: str


def _words(words: Sequence[str]) -> str:
    return "^(" + "|".join(re.escape(w) for w in words) + r")\." if words else "^$"


def topic_permissions(service: Service) -> list[TopicPermission]:
    """``service``'s topic permissions: one per topic exchange it publishes to."""
    own = OWN_QUEUES[service]
    keys = {EVENTS: FACTS[service], COMMANDS: COMMAND_WORDS.get(service, ())}
    return [
        TopicPermission(
            exchange=exchange,
            write=_words(keys[exchange]),
            read=_anchored(
                [re.escape(b) for s in own if s.exchange == exchange for b in s.bindings]
            ),
        )
        for exchange in (EVENTS, COMMANDS)
        if exchange in PUBLISHES[service]
    ]


STORE_PREFIX = "wxkf:"
MEMORY_KEY = "wxkf-store:memory"
"""The one key every store client shares (see ``libs/common/store/redis.py``)."""

KEY_PREFIXES: dict[Service, tuple[str, ...]] = {
    "ingress": ("ingress:",),
    "router": ("router:",),
    "sender": ("sender:", "wechat:token:"),
    "media": ("media:", "wechat:token:"),
}
"""Under :data:`STORE_PREFIX`: each service's own keys, and the shared access token of the two
that call WeChat's API."""

STORE_COMMANDS = (
    "ping",
    "select",
    "get",
    "set",
    "del",
    "unlink",
    "exists",
    "pexpire",
    "hget",
    "hset",
    "hmget",
    "hincrby",
    "evalsha",
    "script|load",
    "info",
    "time",
)
"""What the store client sends for every service (the scripts' own calls included)."""
STREAM_COMMANDS = ("xadd", "xrange", "xdel", "xlen")
"""The ingress's spool."""


def store_acl(service: Service, prefix: str = STORE_PREFIX) -> list[str]:
    """The ``ACL SETUSER`` rules of ``service`` (without the user's name and password)."""
    commands = STORE_COMMANDS + (STREAM_COMMANDS if service == "ingress" else ())
    keys = [f"~{prefix}{p}*" for p in KEY_PREFIXES[service]] + [f"~{MEMORY_KEY}"]
    return ["resetkeys", "resetchannels", "-@all", *(f"+{c}" for c in commands), *keys]


def user_name(service: Service) -> str:
    """The broker and Redis user of ``service``."""
    return f"wxkf-{service}"


def users_acl_line(service: Service, password: str) -> str:
    """``service``'s line of a Redis ACL file (``aclfile``; the operator's ``user.acl``)."""
    return " ".join(["user", user_name(service), "on", f">{password}", *store_acl(service)])


def reference(vhost: str = "/") -> list[str]:
    """What ``wxkf access`` prints: every service's broker permissions and Redis ACL rules,
    with placeholders for the passwords."""
    lines = [
        "# RabbitMQ: one user per service (the prod overlay's Permission and TopicPermission"
        " resources hold the same)"
    ]
    for service in SERVICES:
        allowed = broker_permissions(service)
        lines.append(
            f"rabbitmqctl set_permissions -p {vhost} {user_name(service)} "
            f"'{allowed.configure}' '{allowed.write}' '{allowed.read}'"
        )
        for topic in topic_permissions(service):
            lines.append(
                f"rabbitmqctl set_topic_permissions -p {vhost} {user_name(service)} "
                f"{topic.exchange} '{topic.write}' '{topic.read}'"
            )
    lines.append("# Redis: user.acl of the Secret wxkf-redis-acl (set every password)")
    lines.append("user default on >REPLICATION_PASSWORD ~* &* +@all")
    lines += [users_acl_line(s, f"PASSWORD_OF_{s.upper()}") for s in SERVICES]
    return lines


def access_main(args: object) -> int:
    """``wxkf access``: print :func:`reference`."""
    print("\n".join(reference(getattr(args, "vhost", "/"))))
    return 0
