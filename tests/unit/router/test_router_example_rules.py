"""The shipped examples/rules.yaml does what it promises, at any hour of any day."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from router_helpers import SHANGHAI, card, decide, enter, image, other_event, text

from libs.common.schemas import SendImage, SendMiniProgramPage, SendText
from services.router import plans
from services.router.compiler import compile_file
from services.router.sessions import Session

EXAMPLE = Path(__file__).parents[3] / "examples" / "rules.yaml"
RS = compile_file(EXAMPLE)
# Every hour of a week, and a public holiday.
MONDAY = datetime(2026, 11, 23, 0, 15, tzinfo=SHANGHAI)
TIMES = [(MONDAY + timedelta(hours=h)).timestamp() for h in range(0, 7 * 24, 5)]
TIMES.append(datetime(2026, 10, 1, 12, 0, tzinfo=SHANGHAI).timestamp())


@pytest.mark.parametrize("ts", TIMES)
def test_the_demo_behaves_the_same_at_any_time(ts: float) -> None:
    assert decide(RS, enter(ts=ts)).rule == "welcome"
    d = decide(RS, text("人工", ts=ts))
    assert (d.rule, d.transfer) == ("agent", True)
    assert decide(RS, text("hello", ts=ts)).rule == "fallback"


@pytest.mark.parametrize("content", ["人工", "转人工", "human", "ＨＵＭＡＮ", "我要找客服"])
def test_asking_for_a_human_transfers(content: str) -> None:
    d = decide(RS, text(content))
    assert d.transfer
    assert d.rule == "agent"


def test_welcome_once_a_day_then_quiet() -> None:
    first = decide(RS, enter())
    assert first.rule == "welcome"
    assert first.replies
    again = decide(RS, enter(), Session(last_day=first.day))
    assert (again.rule, again.actions) == ("quiet-events", ("ignore",))


def test_campaign_visitors_are_tagged_and_still_welcomed() -> None:
    d = decide(RS, enter("campaign:double11"))
    assert d.matched == ("campaign-visitor", "welcome")
    assert d.tags == ("campaign",)


def test_other_events_are_never_answered_nor_transferred() -> None:
    for event in (other_event("debug_demo"), other_event("subscribe_msg_popup_event")):
        d = decide(RS, event)
        assert (d.rule, d.transfer, d.replies) == ("quiet-events", False, ())


def test_a_user_waiting_for_an_agent_is_transferred_again() -> None:
    waiting = Session(transferred_at=text("x").create_time - 300)
    for event in (text("还在吗？"), image(), card("pages/goods/1")):
        d = decide(RS, event, waiting)
        assert (d.rule, d.transfer, d.replies) == ("waiting-for-agent", True, ())


def test_faq_answers_with_text_image_and_card() -> None:
    shipping = text("什么时候发货")
    (cmd,) = plans.commands(decide(RS, shipping), shipping)
    assert isinstance(cmd, SendText)
    assert "发货" in cmd.content
    size = text("尺码怎么选")
    note, chart = plans.commands(decide(RS, size), size)
    assert isinstance(note, SendText)
    assert isinstance(chart, SendImage)
    assert chart.asset == "size-chart"
    returns = text("我想退货")
    note, page = plans.commands(decide(RS, returns), returns)
    assert isinstance(page, SendMiniProgramPage)
    assert (page.pagepath, page.thumb_asset) == ("pages/orders/returns", "returns-card")


def test_a_size_exchange_gets_the_chart_and_the_exchange_card() -> None:
    event = text("能换个尺码吗")
    note, chart, page = plans.commands(decide(RS, event), event)
    assert isinstance(note, SendText)
    assert isinstance(chart, SendImage)
    assert isinstance(page, SendMiniProgramPage)
    assert page.pagepath.startswith("pages/orders/returns")


def test_a_shared_product_card_is_answered_with_its_title() -> None:
    event = card("pages/goods/42", title="羊毛围巾")
    (cmd,) = plans.commands(decide(RS, event), event)
    assert isinstance(cmd, SendText)
    assert "「羊毛围巾」" in cmd.content


def test_fallback_answers_anything_else_briefly() -> None:
    for event in (text("你好"), text("🙂"), image()):
        d = decide(RS, event)
        assert d.rule == "fallback"
        assert len(d.replies) == 1
