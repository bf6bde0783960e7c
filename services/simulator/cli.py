"""``wxkf sim``: the WeChat simulator from the command line.

    wxkf sim api --port 8090                    the simulated WeChat API
    wxkf sim push --url URL --text "你好"        one push, as WeChat sends it; prints the outcome
    wxkf sim verify --url URL                   WeChat's URL check
    wxkf sim load --url URL --users 50 --rate 200 --duration 10

Credentials default to ``WXKF_APPID``, ``WXKF_APP_SECRET``, ``WXKF_TOKEN``, ``WXKF_AES_KEY``,
``WXKF_PUSH_MODE`` and ``WXKF_PUSH_FORMAT`` when set, else to the demo values in
:mod:`services.simulator.config`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from services.simulator.config import (
    DEMO_AES_KEY,
    DEMO_APPID,
    DEMO_GH_ID,
    DEMO_OPENID,
    DEMO_SECRET,
    DEMO_TOKEN,
)
from services.simulator.errors import PushError

if TYPE_CHECKING:
    from services.simulator.pusher import Pusher

DEFAULT_API_PORT = 8090


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sim_command", required=True, metavar="ACTION")

    api = sub.add_parser("api", help="serve the simulated WeChat API")
    api.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    api.add_argument(
        "--port",
        type=int,
        default=int(_env("WXKF_SIM_PORT", str(DEFAULT_API_PORT))),
        help=f"the port (WXKF_SIM_PORT, else {DEFAULT_API_PORT})",
    )
    api.add_argument("--appid", default=_env("WXKF_APPID", DEMO_APPID), help="the AppID")
    api.add_argument("--secret", default=_env("WXKF_APP_SECRET", DEMO_SECRET), help="the AppSecret")
    api.add_argument(
        "--gh-id", default=_env("WXKF_GH_ID", DEMO_GH_ID), help="the original id (gh_...)"
    )
    api.add_argument("--text-max-bytes", type=int, default=None, help="longest text (2048)")
    api.add_argument("--media-max-bytes", type=int, default=None, help="largest image (2 MB)")
    api.add_argument(
        "--entry-grant", type=int, default=None, help="messages allowed after entering (2)"
    )
    api.add_argument("--known-users-only", action="store_true", help="strangers get 40003")
    api.add_argument("--start", type=float, default=None, help="clock start, unix seconds")
    api.add_argument("--frozen-clock", action="store_true", help="time moves only by /sim/clock")
    api.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="keep tokens, users' windows and inboxes, and media in FILE: read at start, "
        "written when stopped (wxkf up uses .wxkf/up/simulator.json)",
    )
    api.set_defaults(func=_api)

    push = sub.add_parser("push", help="push one message or event, as WeChat does")
    _pusher_arguments(push)
    kind = push.add_mutually_exclusive_group()
    kind.add_argument("--text", help='a text message (the default, "你好")')
    kind.add_argument("--image", type=Path, metavar="FILE", help="an image message")
    kind.add_argument("--enter", action="store_true", help="the user_enter_tempsession event")
    kind.add_argument(
        "--card", nargs=2, metavar=("TITLE", "PAGEPATH"), help="a miniprogrampage message"
    )
    kind.add_argument("--msgtype", help="a message of a type wxkf does not know")
    kind.add_argument("--event", help="an event wxkf does not know")
    push.add_argument(
        "--session-from", default="", help="the SessionFrom of --enter (the button's session-from)"
    )
    push.add_argument("--json", action="store_true", help="print the whole result as JSON")
    push.set_defaults(func=_push)

    verify = sub.add_parser("verify", help="WeChat's URL check (signed GET with echostr)")
    _pusher_arguments(verify)
    verify.add_argument("--echostr", default=None, help="the string to echo (default: random)")
    verify.set_defaults(func=_verify)

    load = sub.add_parser(
        "load",
        help="push text from many users; print rate, latency and what became of the replies",
    )
    _pusher_arguments(load)
    load.add_argument("--users", type=int, default=10, help="users pushing in turn (10)")
    pace = load.add_mutually_exclusive_group(required=True)
    pace.add_argument("--rate", type=float, help="pushes per second (open loop)")
    pace.add_argument("--concurrency", type=int, help="pushes in flight (closed loop)")
    load.add_argument("--duration", type=float, default=10.0, help="seconds of pushing (10)")
    load.add_argument(
        "--max-in-flight",
        type=int,
        default=2000,
        help="rate mode: pushes waiting for an answer before new ones are skipped (2000)",
    )
    load.add_argument(
        "--wait",
        type=float,
        default=30.0,
        help="with --sim: seconds to wait after the last push for every reply (30)",
    )
    load.set_defaults(func=_load, attempts_default=1)


def _pusher_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="the push URL, e.g. http://127.0.0.1:8080/wechat")
    p.add_argument(
        "--token", default=_env("WXKF_TOKEN", DEMO_TOKEN), help="the Token that signs (WXKF_TOKEN)"
    )
    p.add_argument(
        "--aes-key",
        default=_env("WXKF_AES_KEY", DEMO_AES_KEY),
        help="the EncodingAESKey that encrypts (WXKF_AES_KEY)",
    )
    p.add_argument(
        "--appid",
        default=_env("WXKF_APPID", DEMO_APPID),
        help="the AppID inside encrypted pushes (WXKF_APPID)",
    )
    p.add_argument(
        "--gh-id",
        default=_env("WXKF_GH_ID", DEMO_GH_ID),
        help="the mini program's original id, ToUserName (WXKF_GH_ID)",
    )
    mode = os.environ.get("WXKF_PUSH_MODE")
    p.add_argument(
        "--mode",
        choices=("plain", "compatible", "safe"),
        default=mode if mode in ("plain", "compatible", "safe") else "safe",
        help="encryption, as chosen in WeChat's console (WXKF_PUSH_MODE, else safe)",
    )
    fmt = os.environ.get("WXKF_PUSH_FORMAT")
    p.add_argument(
        "--format",
        choices=("xml", "json"),
        default=fmt if fmt == "json" else "xml",
        help="the body's format (WXKF_PUSH_FORMAT, else xml)",
    )
    p.add_argument("--openid", default=DEMO_OPENID, help="the user who writes")
    p.add_argument(
        "--sim",
        default=None,
        metavar="URL",
        help="the simulator's base URL, e.g. http://127.0.0.1:8090: tells it the user wrote, "
        "which opens the reply window as on WeChat",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per attempt (5)")
    p.add_argument("--attempts", type=int, default=None, help="attempts per push (3; load: 1)")


def _make_pusher(args: argparse.Namespace, **extra: Any) -> Pusher:
    from services.simulator.pusher import Pusher

    attempts = args.attempts or getattr(args, "attempts_default", 3)
    return Pusher(
        args.url,
        token=args.token,
        appid=args.appid,
        aes_key=args.aes_key if args.mode != "plain" else None,
        mode=args.mode,
        fmt=args.format,
        sim=args.sim,
        gh_id=args.gh_id,
        openid=args.openid,
        timeout_s=args.timeout,
        attempts=attempts,
        **extra,
    )


def _api(args: argparse.Namespace) -> int:
    from aiohttp import web

    from libs.common.observability.logging import configure
    from libs.common.runner import serve
    from services.simulator.app import create_app
    from services.simulator.clock import SimClock
    from services.simulator.config import SimConfig
    from services.simulator.saved import SavedStateError, load, save
    from services.simulator.state import SimState

    options: dict[str, Any] = {
        "appid": args.appid,
        "secret": args.secret,
        "gh_id": args.gh_id,
        "known_users_only": args.known_users_only,
    }
    for field, value in (
        ("text_max_bytes", args.text_max_bytes),
        ("media_max_bytes", args.media_max_bytes),
        ("window_enter_count", args.entry_grant),
    ):
        if value is not None:
            options[field] = value
    try:
        config = msgspec.convert(options, SimConfig)
    except msgspec.ValidationError as exc:
        print(f"wxkf sim api: {exc}", file=sys.stderr)
        return 2
    clock = SimClock(args.start, ticking=not args.frozen_clock)
    state: SimState | None = None
    if args.state is not None:
        try:
            state = load(config, args.state)
        except SavedStateError as exc:
            print(f"wxkf sim api: {exc}", file=sys.stderr)
            return 2
    kept = state is not None
    if state is None:
        state = SimState(config, clock=clock)
    app = create_app(state=state)
    if args.state is not None:
        saved_to: Path = args.state
        kept_state: SimState = state

        async def keep(_: web.Application) -> None:
            await asyncio.to_thread(save, kept_state, saved_to)

        app.on_cleanup.append(keep)
    fmt = os.environ.get("WXKF_LOG_FORMAT")
    configure(
        "simulator",
        fmt="json" if fmt == "json" else "console" if fmt == "console" else None,
        level=os.environ.get("WXKF_LOG_LEVEL") or "info",
    )
    memory = f"; state {'read from' if kept else 'kept in'} {args.state}" if args.state else ""
    print(
        f"wxkf sim api: the simulated WeChat API on http://{args.host}:{args.port} "
        f"(appid {config.appid}); controls under /sim/{memory}",
        flush=True,
    )
    serve([(app, args.port)], host=args.host, shutdown_grace_s=5.0)
    return 0


def _push(args: argparse.Namespace) -> int:
    return asyncio.run(_push_async(args))


async def _push_async(args: argparse.Namespace) -> int:
    try:
        pusher = _make_pusher(args)
    except PushError as exc:
        print(f"wxkf sim push: {exc}", file=sys.stderr)
        return 2
    async with pusher:
        try:
            if args.image is not None:
                result = await pusher.image(args.image.read_bytes())
            elif args.enter:
                result = await pusher.enter_session(args.session_from)
            elif args.card:
                result = await pusher.miniprogrampage(title=args.card[0], page_path=args.card[1])
            elif args.msgtype:
                result = await pusher.unknown_message(args.msgtype)
            elif args.event:
                result = await pusher.unknown_event(args.event)
            else:
                result = await pusher.text(args.text or "你好")
        except (PushError, OSError) as exc:
            print(f"wxkf sim push: {exc}", file=sys.stderr)
            return 2
    if args.json:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
    else:
        what = result.event or result.msg_type
        print(
            f"{what} from {result.openid}: {result.outcome} after {result.attempts} "
            f"attempt(s), {result.latency_ms:.1f} ms"
        )
        for a in result.answers:
            got = f"HTTP {a.status}" if a.status is not None else a.error
            reply = f" {a.reply}" if a.reply else ""
            reason = f" ({a.reason})" if a.reason else ""
            print(f"  attempt {a.attempt}: {got}{reply}{reason} in {a.latency_ms:.1f} ms")
        if result.user_notice:
            print(f"  the user sees: {result.user_notice}")
    return 0 if result.ok else 1


def _verify(args: argparse.Namespace) -> int:
    return asyncio.run(_verify_async(args))


async def _verify_async(args: argparse.Namespace) -> int:
    try:
        pusher = _make_pusher(args)
    except PushError as exc:
        print(f"wxkf sim verify: {exc}", file=sys.stderr)
        return 2
    async with pusher:
        result = await pusher.verify(args.echostr)
    if result.ok:
        print(f"verified: the URL echoed {result.echostr}")
        return 0
    got = f"HTTP {result.status}, body {result.body[:80]!r}" if result.status else result.error
    print(f"not verified: expected {result.echostr} back, got {got}")
    return 1


def _load(args: argparse.Namespace) -> int:
    return asyncio.run(_load_async(args))


async def _load_async(args: argparse.Namespace) -> int:
    import aiohttp

    from services.simulator.load import Progress, run_load

    def progress(now: Progress) -> None:
        print(now.line(), file=sys.stderr, flush=True)

    if args.sim is None:
        print(
            "wxkf sim load: without --sim the simulator does not know these users wrote, so "
            "it refuses every reply (45015), and the replies are not counted",
            file=sys.stderr,
        )
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            pusher = _make_pusher(args, session=session)
            report = await run_load(
                pusher,
                users=args.users,
                duration_s=args.duration,
                rate=args.rate,
                concurrency=args.concurrency,
                max_in_flight=args.max_in_flight,
                wait_s=args.wait,
                on_progress=progress,
            )
        except (PushError, ValueError) as exc:
            print(f"wxkf sim load: {exc}", file=sys.stderr)
            return 2
        except (aiohttp.ClientError, OSError) as exc:
            print(
                f"wxkf sim load: the simulator at {args.sim} did not answer: {exc}", file=sys.stderr
            )
            return 2
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1
