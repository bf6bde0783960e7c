"""``wxkf rules check|test``: validate a rules file, and see what it would do with a message.

    wxkf rules check FILE...
    wxkf rules test FILE --text "转人工" [--at 2026-11-25T20:30] [--transferred-ago 5m]
    wxkf rules test FILE --push push.xml
    wxkf rules test FILE --enter [SESSION_FROM] | --card PAGE_PATH | --image

Exit codes: 0 fine, 1 the rules file has mistakes (each printed with line and column),
2 the command line or the push given is unusable. This module is imported by every ``wxkf``
command, so everything heavy is imported inside the functions.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from libs.common.schemas import Command, InboundEvent
    from services.router.engine import Decision, Ruleset
    from services.router.sessions import Session

OPENID = "o-rules-test"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="rules_command", required=True, metavar="ACTION")

    check = sub.add_parser("check", help="validate rules files (errors with line and column)")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=check_command)

    test = sub.add_parser("test", help="show which rule matches a message and what it does")
    test.add_argument("file", metavar="FILE")
    what = test.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="a text message from the user")
    what.add_argument(
        "--push",
        metavar="PUSH_FILE",
        help="a push as WeChat sends it (plaintext XML or JSON), or a bus event (JSON)",
    )
    what.add_argument(
        "--enter",
        nargs="?",
        const="",
        metavar="SESSION_FROM",
        help="the user opens the chat (user_enter_tempsession), with this SessionFrom",
    )
    what.add_argument("--card", metavar="PAGE_PATH", help="the user sends a mini program card")
    test.add_argument("--title", default="", help="the title of the --card")
    what.add_argument("--image", action="store_true", help="the user sends an image")
    test.add_argument(
        "--at",
        metavar="TIME",
        help="when: 2026-11-25T20:30[+08:00] or 20:30 (today); without an offset, in the "
        "rules file's time zone (default: now)",
    )
    test.add_argument("--openid", default=OPENID, help="the user's openid")
    test.add_argument(
        "--transferred-ago",
        metavar="DURATION",
        help="the session says the user was handed to an agent this long ago (e.g. 5m)",
    )
    test.add_argument(
        "--seen-today", action="store_true", help="the user already wrote earlier today"
    )
    test.add_argument("--tag", action="append", default=[], help="a tag the session carries")
    test.set_defaults(func=try_command)


def check_command(args: argparse.Namespace) -> int:
    from services.router.compiler import compile_file
    from services.router.errors import RulesError

    status = 0
    for path in args.files:
        try:
            rs = compile_file(path)
        except RulesError as exc:
            status = 1
            for problem in exc.problems:
                print(problem.render(exc.source), file=sys.stderr)
            count = len(exc.problems)
            print(f"{path}: {count} problem{'s' if count > 1 else ''}", file=sys.stderr)
            continue
        print(f"{path}: ok, {len(rs)} rules and a fallback")
    return status


def try_command(args: argparse.Namespace) -> int:
    from services.router.compiler import compile_file
    from services.router.errors import EventInputError, RulesError

    try:
        rs = compile_file(args.file)
    except RulesError as exc:
        for problem in exc.problems:
            print(problem.render(exc.source), file=sys.stderr)
        return 1
    try:
        ts = when(args.at, rs.zone)
        event = event_from_args(args, ts)
        session = session_from_args(args, rs, ts)
    except EventInputError as exc:
        print(f"wxkf rules test: {exc}", file=sys.stderr)
        return 2
    decision = rs.decide(event, session, ts=float(event.create_time))
    describe(rs, event, decision, sys.stdout)
    return 0


# --- the event and session to try ---------------------------------------------------------------


def when(at: str | None, zone: ZoneInfo) -> float:
    from services.router.errors import EventInputError

    if at is None:
        return datetime.now(zone).timestamp()
    try:
        if len(at) <= 5 and ":" in at:
            moment = datetime.combine(datetime.now(zone).date(), time.fromisoformat(at))
        else:
            moment = datetime.fromisoformat(at)
    except ValueError:
        raise EventInputError(
            f"--at {at!r} is not a time: write 2026-11-25T20:30, 2026-11-25T20:30+08:00 or 20:30"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


def event_from_args(args: argparse.Namespace, ts: float) -> InboundEvent:
    from libs.common.schemas import ImageReceived, MiniProgramPageReceived, SessionEntered
    from libs.common.schemas import TextReceived as Text

    common: dict[str, Any] = {
        "appid": "wx-rules-test",
        "openid": args.openid,
        "correlation_id": "rules-test",
        "to_user": "gh_rules_test",
        "create_time": int(ts),
    }
    if args.text is not None:
        return Text(**common, msg_id=1, content=args.text)
    if args.enter is not None:
        return SessionEntered(**common, session_from=args.enter)
    if args.card is not None:
        return MiniProgramPageReceived(**common, msg_id=1, title=args.title, page_path=args.card)
    if args.image:
        return ImageReceived(**common, msg_id=1, media_id="MEDIA_ID")
    return event_from_push(_read_push(args.push), appid="wx-rules-test")


def _read_push(path: str) -> bytes:
    from pathlib import Path

    from services.router.errors import EventInputError

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise EventInputError(f"cannot read {path}: {exc.strerror}") from None


def event_from_push(body: bytes, *, appid: str) -> InboundEvent:
    """A bus event (JSON with ``type``) as it is, or a WeChat push (XML or JSON) read by the codec.

    A push's own CreateTime is kept: ``--at`` does not change a push given in full.
    """
    import msgspec

    from libs.common import schemas
    from libs.common.wechat import codec
    from libs.common.wechat.errors import WeChatError
    from services.router.errors import EventInputError

    stripped = body.lstrip()
    if stripped.startswith(b"{") and b'"type"' in body:
        try:
            msg = schemas.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise EventInputError(f"not a bus event: {exc}") from None
        if not isinstance(msg, schemas.Inbound):
            raise EventInputError(f"a {msg.routing_key()} message is not an inbound event")
        return msg
    try:
        parsed = codec.parse(body)
    except WeChatError as exc:
        raise EventInputError(f"not a readable push: {exc}") from None
    from libs.common.inbound import to_event

    return to_event(parsed, appid=appid)


def session_from_args(args: argparse.Namespace, rs: Ruleset, ts: float) -> Session:
    from services.router.compiler import duration_s
    from services.router.errors import EventInputError, SpecError
    from services.router.sessions import Session

    transferred_at = None
    if args.transferred_ago is not None:
        try:
            transferred_at = ts - duration_s(args.transferred_ago)
        except SpecError as exc:
            raise EventInputError(f"--transferred-ago: {exc.message}") from None
    last_day = datetime.fromtimestamp(ts, rs.zone).date().isoformat() if args.seen_today else ""
    return Session(transferred_at=transferred_at, last_day=last_day, tags=tuple(args.tag))


# --- the report --------------------------------------------------------------------------------


def describe(rs: Ruleset, event: InboundEvent, decision: Decision, out: TextIO) -> None:
    from services.router import plans

    lines = {r.name: r.line for r in (*rs.rules, rs.fallback)}
    at = decision.at.strftime("%Y-%m-%d %H:%M %Z")
    print(f"event:     {event.routing_key()}{_summary(event)} at {at}", file=out)
    print(f"rule:      {decision.rule} (line {lines.get(decision.rule, 0)})", file=out)
    if len(decision.matched) > 1:
        print(f"matched:   {' → '.join(decision.matched)}", file=out)
    if decision.transfer:
        print("transfer:  yes (ingress answers transfer_customer_service)", file=out)
    else:
        print("transfer:  no", file=out)
    print(f"actions:   {', '.join(decision.actions)}", file=out)
    commands = plans.commands(decision, event)
    if commands:
        print("commands:", file=out)
        for cmd in commands:
            head = f"  {cmd.seq + 1}. {cmd.routing_key():<22} "
            # The lines of a multi-line reply line up under its first.
            body = _command(cmd).replace("\n", "\n" + " " * len(head))
            print(head + body, file=out)
    for topic in decision.extensions:
        print(f"extension: the event goes to ext.{topic}", file=out)
    if decision.tags:
        print(f"tags:      {', '.join(decision.tags)}", file=out)


def _summary(event: InboundEvent) -> str:
    from libs.common.schemas import MiniProgramPageReceived, SessionEntered, TextReceived

    if isinstance(event, TextReceived):
        return f" {event.content!r}"
    if isinstance(event, SessionEntered):
        return f" from {event.session_from!r}" if event.session_from else ""
    if isinstance(event, MiniProgramPageReceived):
        return f" {event.page_path!r}"
    return ""


def _command(cmd: Command) -> str:
    from libs.common.schemas import SendImage, SendLink, SendMiniProgramPage, SendText

    if isinstance(cmd, SendText):
        return cmd.content
    if isinstance(cmd, SendImage):
        return f"asset {cmd.asset}" if cmd.asset else f"media_id {cmd.media_id}"
    if isinstance(cmd, SendLink):
        return f"{cmd.title} <{cmd.url}>"
    if isinstance(cmd, SendMiniProgramPage):
        thumb = cmd.thumb_asset or cmd.thumb_media_id
        return f"{cmd.title} → {cmd.pagepath} (thumb {thumb})"
    return cmd.command
