"""A decision as commands: order, stable ids, templating, the stored plan."""

from __future__ import annotations

from router_helpers import decide, enter, rules, text

from libs.common.schemas import (
    SendImage,
    SendLink,
    SendMiniProgramPage,
    SendText,
    SendTyping,
    derived_id,
)
from services.router import plans

RS = rules(
    """\
    rules:
      - name: all
        match: {text: all}
        typing: true
        reply:
          - 你好，你说了「{text}」
          - image: size-chart
          - image: {media_id: MEDIA_1}
          - link: {title: 帮助, url: "https://example.com/help", description: d}
          - miniprogram: {title: 退货, pagepath: pages/returns, thumb_asset: card}
          - miniprogram: {title: 订单, pagepath: pages/orders, thumb_media_id: MEDIA_2}
        tag: [asked, asked]
        extension: [analytics, analytics]
      - {name: quiet, match: {type: event}, ignore: true}
    """
)


def test_commands_keep_the_order_and_share_the_cause() -> None:
    event = text("all")
    cmds = plans.commands(decide(RS, event), event)
    assert [type(c) for c in cmds] == [
        SendTyping,
        SendText,
        SendImage,
        SendImage,
        SendLink,
        SendMiniProgramPage,
        SendMiniProgramPage,
    ]
    assert [c.seq for c in cmds] == list(range(7))
    assert {c.total for c in cmds} == {7}
    assert {c.cause_id for c in cmds} == {event.id}
    assert {(c.appid, c.openid, c.correlation_id) for c in cmds} == {
        (event.appid, event.openid, event.correlation_id)
    }
    assert [c.id for c in cmds] == [derived_id(event.id, str(i)) for i in range(7)]
    text_cmd, asset, media, link, card_asset, card_media = cmds[1:]
    assert isinstance(text_cmd, SendText)
    assert text_cmd.content == "你好，你说了「all」"
    assert isinstance(asset, SendImage)
    assert (asset.asset, asset.media_id) == ("size-chart", None)
    assert isinstance(media, SendImage)
    assert (media.asset, media.media_id) == (None, "MEDIA_1")
    assert isinstance(link, SendLink)
    assert link.url == "https://example.com/help"
    assert isinstance(card_asset, SendMiniProgramPage)
    assert card_asset.thumb_asset == "card"
    assert isinstance(card_media, SendMiniProgramPage)
    assert card_media.thumb_media_id == "MEDIA_2"


def test_commands_name_the_reply_window_their_event_opens() -> None:
    message = text("all")
    assert {(c.opens, c.opened_at) for c in plans.commands(decide(RS, message), message)} == {
        ("message", message.create_time)
    }
    welcome = rules(
        """\
        rules:
          - {name: hi, match: {event: user_enter_tempsession}, reply: 欢迎}
        """
    )
    entered = enter()
    [cmd] = plans.commands(decide(welcome, entered), entered)
    assert (cmd.opens, cmd.opened_at) == ("enter", entered.create_time)


def test_ids_are_the_same_when_the_same_event_is_planned_again() -> None:
    event = text("all")
    first = plans.commands(decide(RS, event), event)
    second = plans.commands(decide(RS, event), event)
    assert [c.id for c in first] == [c.id for c in second]
    other = text("all")
    assert not {c.id for c in first} & {c.id for c in plans.commands(decide(RS, other), other)}


def test_plan_carries_the_fact_and_the_session_change() -> None:
    event = text("all")
    plan = plans.plan(decide(RS, event), event, late=True, latency_us=321)
    assert plan.fact is not None
    assert plan.fact.routing_key() == "decision.typing"
    assert plan.fact.id == derived_id(event.id, "decision")
    assert (plan.fact.event_id, plan.fact.rule, plan.fact.late, plan.fact.latency_us) == (
        event.id,
        "all",
        True,
        321,
    )
    assert plan.fact.actions == ["typing", "reply", "tag", "extension"]
    assert plan.extensions == ["analytics"]
    assert plan.change is not None
    assert plan.change.add_tags == ("asked",)


def test_ignored_event_plans_nothing_but_the_fact() -> None:
    event = enter()
    plan = plans.plan(decide(RS, event), event, late=False, latency_us=1)
    assert plan.commands == []
    assert plan.extensions == []
    assert plan.fact is not None
    assert plan.fact.routing_key() == "decision.ignore"


def test_plan_round_trips_and_finishes_small() -> None:
    event = text("all")
    plan = plans.plan(decide(RS, event), event, late=False, latency_us=5)
    assert plans.decode(plans.encode(plan)) == plan
    done = plan.finished()
    assert (done.done, done.rule, done.transfer, done.commands, done.fact) == (
        True,
        "all",
        False,
        [],
        None,
    )
    assert len(plans.encode(done)) < 64
