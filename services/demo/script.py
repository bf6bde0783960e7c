"""The scripted conversation, and what each step must have led to.

One user, five steps: opening the chat (welcome), a frequent question (a text, an image and
a mini program card), WeChat resending that push (deduplicated), asking for a human
(transferred), and the shop sending more than the reply window allows (refused by quota).
Each step pushes over real HTTP and then checks what WeChat delivered to the user (the
simulator's inbox) and the facts on the bus (the observer); it adds the lines that tell the
story to its result, or raises :class:`StepFailed` naming what did not happen.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from libs.common.schemas import DecisionMade, Outcome, Rejected, SendText, Sent, new_id
from libs.common.wechat import codec
from services.demo.errors import StepFailed
from services.demo.stage import (
    Line,
    Stage,
    StepResult,
    check_delivered,
    decision_line,
    delivery_line,
    duplicates,
    expect_rule,
    outcome_text,
    short,
)
from services.simulator.pusher import new_msg_id

FAQ_TEXT = "衣服小了，能换尺码吗？"
HUMAN_TEXT = "转人工"
SESSION_FROM = "goods-page"
UPDATES = (
    "订单 2026112501 已付款，我们会尽快为您备货。",
    "订单 2026112501 已打包。",
    "订单 2026112501 已发货，顺丰快递 SF1234567890。",
    "包裹已到达上海转运中心。",
    "包裹正在派送，请保持电话畅通。",
)
"""What the shop's order system sends; the reply window holds only the first four."""

Step = Callable[[Stage, StepResult], Awaitable[None]]


# -- the steps ----------------------------------------------------------------------------------


async def welcome(stage: Stage, result: StepResult) -> None:
    step, lines = result.name, result.lines
    message = codec.EnterSessionEvent(
        to_user=stage.gh_id,
        from_user=stage.openid,
        create_time=int(stage.sim.now()),
        session_from=SESSION_FROM,
    )
    push = stage.wire.build(message)
    answer = await stage.wire.send(push)
    lines.append(
        Line(at=answer.sent_at, who="user", text=f'opens the chat (session-from "{SESSION_FROM}")')
    )
    lines.append(await stage.expect_answer(step, push, answer, "success"))
    event = await stage.inbound(step, push)
    decision = await stage.decision(step, event)
    lines.append(decision_line(decision, 1))
    expect_rule(step, decision, "welcome", transfer=False)
    await stage.replies(step, event, ["text"], lines)
    result.verdict = "welcomed: rule welcome, 1 message delivered"


async def faq(stage: Stage, result: StepResult) -> None:
    step, lines = result.name, result.lines
    message = codec.TextMessage(
        to_user=stage.gh_id,
        from_user=stage.openid,
        create_time=await stage.message_time(),
        content=FAQ_TEXT,
        msg_id=new_msg_id(),
    )
    push = stage.wire.build(message)
    stage.pushes["faq"] = push
    answer = await stage.wire.send(push)
    lines.append(Line(at=answer.sent_at, who="user", text=f"「{FAQ_TEXT}」"))
    lines.append(await stage.expect_answer(step, push, answer, "success"))
    event = await stage.inbound(step, push)
    decision = await stage.decision(step, event)
    lines.append(decision_line(decision, 3))
    expect_rule(step, decision, "faq-exchange", transfer=False)
    await stage.replies(step, event, ["text", "image", "miniprogrampage"], lines)
    result.verdict = "answered by rule faq-exchange: text, image and card, in that order"


async def retry(stage: Stage, result: StepResult) -> None:
    step, lines = result.name, result.lines
    push = stage.pushes.get("faq")
    if push is None:
        raise StepFailed(step, "there is no earlier push to resend")
    message = push.message
    assert isinstance(message, codec.TextMessage)
    answer = await stage.wire.send(push, first=False)
    lines.append(
        Line(
            at=answer.sent_at,
            who="WeChat",
            text=f"sends the same push again (MsgId {message.msg_id}: same query, same body), "
            "as it does when an answer is slow or lost",
        )
    )
    lines.append(await stage.expect_answer(step, push, answer, "success"))
    events = duplicates(stage.observer, stage.openid, message.msg_id)
    decisions = [d for d in stage.observer.of(DecisionMade) if d.event_id in {e.id for e in events}]
    if len(events) != 1 or len(decisions) != 1:
        raise StepFailed(
            step, f"{len(events)} events and {len(decisions)} decisions for one push, expected 1"
        )
    lines.append(
        Line(
            at=time.time(),
            who="ingress",
            text=f"deduplicated by MsgId: still one event on kf.events ({events[0].id[:12]}…), "
            "one decision, no second answer",
        )
    )
    result.verdict = "deduplicated: the resent push made no second event"


async def human(stage: Stage, result: StepResult) -> None:
    step, lines = result.name, result.lines
    message = codec.TextMessage(
        to_user=stage.gh_id,
        from_user=stage.openid,
        create_time=await stage.message_time(),
        content=HUMAN_TEXT,
        msg_id=new_msg_id(),
    )
    push = stage.wire.build(message)
    answer = await stage.wire.send(push)
    lines.append(Line(at=answer.sent_at, who="user", text=f"「{HUMAN_TEXT}」"))
    lines.append(await stage.expect_answer(step, push, answer, "transfer_customer_service"))
    lines.append(
        Line(
            at=answer.sent_at + answer.latency_ms / 1000,
            who="WeChat",
            text="hands the conversation to the agents' customer service tool",
        )
    )
    event = await stage.inbound(step, push)
    decision = await stage.decision(step, event)
    lines.append(decision_line(decision, 1))
    expect_rule(step, decision, "agent", transfer=True)
    await stage.replies(step, event, ["text"], lines)
    result.verdict = "transferred: transfer_customer_service answered within the push"


async def quota(stage: Stage, result: StepResult) -> None:
    step, lines = result.name, result.lines
    correlation = new_id()
    lines.append(
        Line(
            at=time.time(),
            who="extension",
            text=f"the shop's order system sends {len(UPDATES)} updates, one send.text command "
            "on kf.commands at a time, each once the previous one's outcome came",
        )
    )
    outcomes: list[Outcome] = []
    commands: list[SendText] = []
    for content in UPDATES:
        command = SendText(
            appid=stage.appid, openid=stage.openid, correlation_id=correlation, content=content
        )
        await stage.bus.publish(command)
        commands.append(command)
        (outcome,) = await stage.outcomes(step, [command])
        outcomes.append(outcome)
    *allowed, last = outcomes
    for command, outcome in zip(commands, allowed, strict=False):
        if not isinstance(outcome, Sent):
            raise StepFailed(step, f"「{command.content}」 was not sent: {outcome_text(outcome)}")
    if not (isinstance(last, Rejected) and last.reason == "quota_exhausted"):
        raise StepFailed(
            step, f"the 5th update was {outcome_text(last)}, expected rejected: quota_exhausted"
        )
    delivered = await stage.deliveries(step, len(allowed))
    check_delivered(step, commands[: len(allowed)], delivered)
    lines.extend(delivery_line(d) for d in delivered)
    by = "WeChat's answer 45047" if last.errcode else "the sender's own count, without a call"
    lines.append(
        Line(
            at=last.time_ms / 1000,
            who="sender",
            text=f"refuses 「{short(commands[-1].content)}」: outbound.rejected.quota_exhausted "
            f"({by}): WeChat allows 5 messages per user message, this would be the 6th "
            f"since 「{HUMAN_TEXT}」",
        )
    )
    result.verdict = "refused by the quota: 4 updates delivered, the 5th rejected, none lost"


def afterwards(stage: Stage) -> tuple[str, str] | None:
    """The step and its problem, if the whole conversation shows one once every step is done."""
    push = stage.pushes.get("faq")
    if push is not None and isinstance(push.message, codec.TextMessage):
        events = duplicates(stage.observer, stage.openid, push.message.msg_id)
        if len(events) != 1:
            return "retry", f"the resent push made {len(events)} events"
    inbox = stage.sim.inbox(stage.openid)
    if len(inbox) != stage.received:
        extra = [d.msgtype for d in inbox[stage.received :]]
        return "quota", f"the user received {len(extra)} message(s) more than expected: {extra}"
    return None


STEPS: tuple[tuple[str, str, Step], ...] = (
    ("welcome", "The user opens the chat from the contact button of a product page", welcome),
    ("faq", "The user asks a frequent question", faq),
    ("retry", "WeChat sends that push again", retry),
    ("human", "The user asks for a human", human),
    ("quota", "The shop sends more than WeChat's reply window allows", quota),
)


async def play(stage: Stage, on_step: Callable[[StepResult], None]) -> list[StepResult]:
    """Run the steps in order until one fails; ``on_step`` gets each result when it ends.

    When every step passed, the whole conversation is checked once more (nothing extra was
    delivered, the resent push still has one event); a problem found then fails the step
    whose promise it breaks.
    """
    results: list[StepResult] = []
    for number, (name, title, run) in enumerate(STEPS, start=1):
        result = StepResult(number=number, name=name, title=title)
        try:
            await run(stage, result)
        except StepFailed as exc:
            result.problem = exc.problem
        result.lines.sort(key=lambda line: line.at)
        on_step(result)
        results.append(result)
        if not result.ok:
            return results
    late = afterwards(stage)
    if late is not None:
        blamed, problem = late
        for result in results:
            if result.name == blamed:
                result.problem = f"checked again at the end: {problem}"
    return results
