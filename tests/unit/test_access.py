"""``wxkf access``: what it prints is what the users get (libs/common/access.py)."""

from __future__ import annotations

import re

from libs.common.access import (
    SERVICES,
    broker_permissions,
    reference,
    store_acl,
    user_name,
    users_acl_line,
)
from libs.common.topology import ROUTER_EVENTS, SENDER_COMMANDS


def test_it_prints_every_users_permissions_and_acl_line() -> None:
    printed = reference("/")
    for service in SERVICES:
        allowed = broker_permissions(service)
        assert any(user_name(service) in line and f"'{allowed.read}'" in line for line in printed)
        assert users_acl_line(service, f"PASSWORD_OF_{service.upper()}") in printed
    assert "user default on >REPLICATION_PASSWORD ~* &* +@all" in printed
    topics = [line for line in printed if "set_topic_permissions" in line]
    assert (
        "rabbitmqctl set_topic_permissions -p / wxkf-ingress kf.events '^(msg|event)\\.' '^$'"
        in topics
    )
    assert len(topics) == 5, "kf.events for each service, kf.commands for the router"


def test_an_acl_line_is_the_rules_redis_is_given() -> None:
    line = users_acl_line("router", "pw")
    assert line == "user wxkf-router on >pw " + " ".join(store_acl("router"))


def test_the_permissions_name_each_queue_with_its_dead_letters_and_delays() -> None:
    read = re.compile(broker_permissions("sender").read)
    for name in ("wxkf.sender.commands", "wxkf.sender.commands.dlq"):
        assert read.fullmatch(name)
    assert read.fullmatch(SENDER_COMMANDS.delay_queue(0.4))
    assert not read.fullmatch(ROUTER_EVENTS.name)
    assert not re.compile(broker_permissions("ingress").write).fullmatch("kf.commands")
