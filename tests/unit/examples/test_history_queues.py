"""The history's own queues: one per exchange, named from one setting."""

from __future__ import annotations

from examples.extension.queues import DEFAULT_MAX_LENGTH, DEFAULT_QUEUE, history_queues
from libs.common.bus.topic import matches
from libs.common.topology import COMMANDS, CORE_QUEUES, EVENTS


def test_one_queue_per_exchange_named_from_one_name() -> None:
    events, commands = history_queues("shop.history")
    assert (events.name, events.exchange) == ("shop.history", EVENTS)
    assert (commands.name, commands.exchange) == ("shop.history.commands", COMMANDS)
    assert history_queues()[0].name == DEFAULT_QUEUE


def test_the_queues_are_bounded_while_the_history_is_away() -> None:
    assert {q.max_length for q in history_queues()} == {DEFAULT_MAX_LENGTH}
    assert {q.max_length for q in history_queues(max_length=50)} == {50}


def test_the_names_are_not_the_core_services() -> None:
    core = {q.name for q in CORE_QUEUES} | {q.dlq for q in CORE_QUEUES}
    for spec in history_queues():
        assert spec.name not in core
        assert spec.dlq not in core


def test_bindings_take_every_fact_and_command_a_conversation_needs() -> None:
    events, commands = history_queues()
    for key in (
        "msg.text",
        "msg.voice",  # a type this version does not know
        "event.user_enter_tempsession",
        "decision.transfer",
        "outbound.sent.text",
        "outbound.rejected.quota_exhausted",
        "media.archived",
    ):
        assert any(matches(p, key) for p in events.bindings), key
    assert any(matches(p, "send.miniprogrampage") for p in commands.bindings)
    # Extension topics carry the original event again (same id): not wanted twice.
    assert not any(matches(p, "ext.crm") for p in events.bindings)
