"""The checks and lines of the demo's steps, and how the console shows them."""

from __future__ import annotations

import pytest

from libs.common.schemas import DecisionMade, Rejected, SendImage, SendText, Sent, TextReceived
from services.demo import render
from services.demo.errors import StepFailed
from services.demo.observer import Seen
from services.demo.stage import Line, StepResult, check_delivered, decision_line, expect_rule
from services.simulator.users import Delivered

APPID, OPENID = "wx5f2a0c4e9b7d1386", "oWxkfUnitUser0000000000000001"


def text(content: str, seq: int = 0) -> SendText:
    return SendText(appid=APPID, openid=OPENID, correlation_id="c", seq=seq, content=content)


def delivered(msgtype: str, **body: str) -> Delivered:
    return Delivered(seq=1, time=1_700_000_000.0, msgtype=msgtype, body=body)


def decision(rule: str, *, transfer: bool = False) -> DecisionMade:
    return DecisionMade(
        appid=APPID,
        openid=OPENID,
        correlation_id="c",
        event_id="e1",
        rule=rule,
        action="transfer" if transfer else "reply",
        actions=["transfer", "reply"] if transfer else ["reply"],
        transfer=transfer,
        latency_us=1500,
    )


def test_deliveries_match_the_commands_in_order() -> None:
    image = SendImage(appid=APPID, openid=OPENID, correlation_id="c", seq=1, asset="size-chart")
    check_delivered("faq", [text("a"), image], [delivered("text", content="a"), delivered("image")])
    with pytest.raises(StepFailed, match=r"received \['image', 'text'\], expected"):
        check_delivered(
            "faq", [text("a"), image], [delivered("image"), delivered("text", content="a")]
        )
    with pytest.raises(StepFailed, match="other text than 「a」"):
        check_delivered("faq", [text("a")], [delivered("text", content="b")])


def test_the_rule_and_the_transfer_must_both_be_as_expected() -> None:
    expect_rule("human", decision("agent", transfer=True), "agent", transfer=True)
    with pytest.raises(StepFailed, match="rule 'fallback' decided"):
        expect_rule("human", decision("fallback"), "agent", transfer=True)
    with pytest.raises(StepFailed, match=r"\(transfer False\), expected rule 'agent'"):
        expect_rule("human", decision("agent"), "agent", transfer=True)


def test_a_decision_reads_as_its_rule_and_actions() -> None:
    line = decision_line(decision("agent", transfer=True), 1)
    assert line.who == "router"
    assert line.text == 'rule "agent" → transfer, reply: 1 message (decided in 1.5 ms)'


def test_a_step_prints_its_lines_and_verdict_or_its_problem() -> None:
    passed = StepResult(number=2, name="faq", title="A question", verdict="answered")
    passed.lines.append(Line(at=0.0, who="user", text="「你好」"))
    shown = render.step(passed, 5)
    assert shown[0] == "2/5  A question"
    assert shown[1].endswith("user      「你好」")
    assert shown[2] == "   ✓ answered"
    failed = StepResult(number=3, name="retry", title="Again", problem="2 events")
    assert "   ✗ step 3 (retry) failed: 2 events" in render.step(failed, 5)
    assert render.summary([passed, failed], 5)[0] == "✗ step 3 (retry) failed: 2 events"
    assert render.summary([passed], 5)[0] == "✗ the script stopped after 1 of 5 steps"
    assert render.summary([passed] * 5, 5)[0].startswith("✓ all 5 steps")


def test_live_lines_tell_who_said_what_and_what_became_of_it() -> None:
    printed: list[str] = []
    live = render.Live(printed.append)
    said = TextReceived(
        appid=APPID,
        openid=OPENID,
        correlation_id="c",
        to_user="gh_1",
        create_time=1,
        msg_id=7,
        content="发货",
    )
    command = text("48 小时内发货")
    for msg in (
        said,
        decision("faq-shipping"),
        command,
        Sent(appid=APPID, openid=OPENID, correlation_id="c", command_id=command.id, msgtype="text"),
        Rejected(
            appid=APPID,
            openid=OPENID,
            correlation_id="c",
            command_id="unknown",
            msgtype="text",
            reason="quota_exhausted",
        ),
    ):
        live(Seen(at=0.0, msg=msg, routing_key=msg.routing_key()))
    assert [p.split(maxsplit=2)[1:] for p in printed] == [
        ["user", "…000001 「发货」"],
        ["router", 'rule "faq-shipping" → reply'],
        ["WeChat", "delivers to …000001 [text] 「48 小时内发货」"],
        ["sender", "refuses [text]: outbound.rejected.quota_exhausted"],
    ]
