"""The console side of the demo: the conversation as people read it.

Plain text, one line per thing that happened: the local time, who acted, what they did. No
colours, so the output reads the same in a terminal, a log file or a CI job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from libs.common.schemas import (
    DecisionMade,
    Failed,
    InboundEvent,
    OtherEventReceived,
    OtherMessageReceived,
    Rejected,
    SendCommand,
    SendImage,
    SendMiniProgramPage,
    SendText,
    Sent,
    SessionEntered,
    TextReceived,
)
from services.command import wxkf_command
from services.demo.observer import Seen
from services.demo.settings import PORT_VARIABLES
from services.demo.stage import StepResult

WHO_WIDTH = 9
TRY_OPENID = "oWxkfTryItYourself0000000001"
"""Not the script's user, who waits for an agent by the end of it."""


def clock(at: float) -> str:
    local = time.localtime(at)
    return time.strftime("%H:%M:%S", local) + f".{int(at * 1000) % 1000:03d}"


def line(at: float, who: str, text: str) -> str:
    return f"   {clock(at)}  {who:<{WHO_WIDTH}} {text}"


def step(result: StepResult, total: int) -> list[str]:
    out = [f"{result.number}/{total}  {result.title}"]
    out += [line(item.at, item.who, item.text) for item in result.lines]
    if result.ok:
        out.append(f"   ✓ {result.verdict}")
    else:
        out.append(f"   ✗ step {result.number} ({result.name}) failed: {result.problem}")
    out.append("")
    return out


def header(log_path: str) -> list[str]:
    return [
        "wxkf demo: ingress, router, sender and media in one process on memory://, with the",
        "shipped rules and the WeChat simulator; every push goes over HTTP in safe mode (XML).",
        f"The services log to {log_path}",
        "",
    ]


def summary(results: Sequence[StepResult], total: int) -> list[str]:
    failed = [r for r in results if not r.ok]
    if failed:
        first = failed[0]
        return [f"✗ step {first.number} ({first.name}) failed: {first.problem}", ""]
    if len(results) < total:
        return [f"✗ the script stopped after {len(results)} of {total} steps", ""]
    return [f"✓ all {total} steps had their expected outcome.", ""]


def where(ports: Mapping[str, int], log_path: str, *, serving: bool) -> list[str]:
    push_url = f"http://127.0.0.1:{ports['ingress']}/wechat"
    sim_url = f"http://127.0.0.1:{ports['simulator']}"
    internal = f"http://127.0.0.1:{ports['internal']}"
    out = [
        "The system keeps serving; Ctrl-C stops it." if serving else "Where everything was:",
        f"   push URL    {push_url}   (Token wxkfdemotoken, safe mode, XML)",
        f"   /metrics    {internal}/metrics   (and /readyz: the internal port, never public)",
        f"   WeChat API  {sim_url}   (the simulator; what a user received: "
        "/sim/users/<openid>/inbox)",
        f"   logs        {log_path}",
    ]
    if serving:
        push = f"{wxkf_command()} sim push --url {push_url} --sim {sim_url} --openid {TRY_OPENID}"
        out += [
            "Talk to it as WeChat would, as a user of your own; what happens is printed below:",
            f"   {push} --enter",
            f"   {push} --text 发货",
        ]
    out += [
        "Ports: " + ", ".join(f"{v} ({k})" for k, v in PORT_VARIABLES.items()) + "; 0 picks one.",
        "",
    ]
    return out


class Live:
    """Prints what happens on the bus after the script: each push, decision and reply."""

    def __init__(self, print_line: Callable[[str], None]) -> None:
        self.print_line = print_line
        self.commands: dict[str, SendCommand] = {}

    def __call__(self, seen: Seen) -> None:
        text = self.describe(seen)
        if text is not None:
            self.print_line(line(seen.at, *text))

    def describe(self, seen: Seen) -> tuple[str, str] | None:
        msg = seen.msg
        if isinstance(msg, SendCommand):
            self.commands[msg.id] = msg
            return None
        if isinstance(msg, InboundEvent):
            return "user", f"{user_tag(msg.openid)} {said(msg)}"
        if isinstance(msg, DecisionMade):
            actions = ", ".join(msg.actions or [msg.action])
            return "router", f'rule "{msg.rule}" → {actions}'
        if isinstance(msg, Sent | Rejected | Failed):
            command = self.commands.get(msg.command_id)
            what = command_text(command) if command else f"[{msg.msgtype}]"
            if isinstance(msg, Sent):
                return "WeChat", f"delivers to {user_tag(msg.openid)} {what}"
            if isinstance(msg, Rejected):
                return "sender", f"refuses {what}: outbound.rejected.{msg.reason}"
            return "sender", f"could not send {what}: {msg.errmsg or msg.errcode}"
        return None


def user_tag(openid: str) -> str:
    return openid if len(openid) <= 12 else f"…{openid[-6:]}"


def said(msg: InboundEvent) -> str:
    if isinstance(msg, TextReceived):
        return f"「{msg.content}」"
    if isinstance(msg, SessionEntered):
        return "opens the chat" + (
            f' (session-from "{msg.session_from}")' if msg.session_from else ""
        )
    if isinstance(msg, OtherMessageReceived):
        return f"sends a {msg.msg_type} message (msg.{msg.msg_type})"
    if isinstance(msg, OtherEventReceived):
        return f"event {msg.event}"
    return f"sends {msg.routing_key()}"


def command_text(command: SendCommand) -> str:
    if isinstance(command, SendText):
        return f"[text] 「{command.content}」"
    if isinstance(command, SendImage):
        return f"[image] {command.asset or command.media_id}"
    if isinstance(command, SendMiniProgramPage):
        return f"[mini program card] 「{command.title}」 → {command.pagepath}"
    return f"[{command.msgtype}]"
