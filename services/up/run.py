"""``wxkf up [--fresh]``: plan the run, keep or clear what earlier runs left, run it."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import msgspec

from libs.common.bus import BusError
from libs.common.bus.amqp import safe_url
from libs.common.observability.logging import configure
from libs.common.ports import PortBusy
from libs.common.settings import SettingsError
from libs.common.store import StoreError
from services.command import wxkf_command
from services.up import local_state, processes, users
from services.up.plan import SIMULATOR, Plan, plan

USAGE_ERROR = 2


def main(args: argparse.Namespace) -> int:
    # Our own few lines go to the console; the libraries' (bus.connected …) only when wrong.
    configure("wxkf-up", fmt="console", level="warning")
    try:
        made = plan(os.environ)
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"wxkf: configuration error: {line}", file=sys.stderr)
        return USAGE_ERROR
    except PortBusy as exc:
        print(f"wxkf up: {exc}", file=sys.stderr)
        return USAGE_ERROR
    try:
        local_state.prepare(made.layout)
    except OSError as exc:
        print(f"wxkf up: cannot write {made.layout.directory}: {exc.strerror}", file=sys.stderr)
        return USAGE_ERROR
    try:
        return asyncio.run(_up(made, fresh=bool(args.fresh)))
    except (BusError, StoreError) as exc:
        print(f"wxkf up: {exc}", file=sys.stderr)
        return 1


def header(made: Plan, *, fresh: bool) -> list[str]:
    env = made.env
    kept = made.layout.directory
    state = (
        f"started clean (--fresh); state is kept in Redis, RabbitMQ and {kept} from now on"
        if fresh
        else f"state kept from earlier runs in Redis, RabbitMQ and {kept}; "
        f"`{wxkf_command()} up --fresh` starts clean"
    )
    return [
        "wxkf up: ingress, router, sender and media, each its own process, and the WeChat "
        "simulator;",
        f"   broker {safe_url(env['WXKF_BUS_URL'])}, store {safe_url(env['WXKF_STORE_URL'])}",
        f"   {state}",
    ]


def ready_lines(made: Plan) -> list[str]:
    wxkf = wxkf_command()
    push, sim = made.push_url, made.url(SIMULATOR)
    return [
        f"wxkf up: 5 processes ready; push URL {push}",
        "   Ctrl-C stops every process gracefully; a second Ctrl-C stops them at once.",
        "   Talk to it as WeChat would:",
        f"   {wxkf} sim push --url {push} --sim {sim} --text 尺码",
        f"   {wxkf} sim load --url {push} --sim {sim} --users 50 --rate 50 --duration 10",
        f"   {wxkf} dlq list",
    ]


async def _own_users(made: Plan) -> Plan:
    """Each service as its own broker and Redis user (:mod:`services.up.users`), or the admin
    URLs for all when they cannot be made (said in one line)."""
    env = made.env
    try:
        urls = await users.provision(env["WXKF_BUS_URL"], env["WXKF_STORE_URL"], made.queues)
    except users.UsersUnavailable as exc:
        print(f"   every service uses the URLs above: no user of its own ({exc})", flush=True)
        return made
    print(
        "   each service is a broker and Redis user of its own (wxkf-ingress, wxkf-router, "
        "wxkf-sender, wxkf-media), limited as in prod",
        flush=True,
    )
    return msgspec.structs.replace(made, own={name: u.env() for name, u in urls.items()})


async def _up(made: Plan, *, fresh: bool) -> int:
    if fresh:
        forgotten = await local_state.start_clean(made)
        print(forgotten.line(), flush=True)
    for line in header(made, fresh=fresh):
        print(line, flush=True)
    made = await _own_users(made)
    stop, stop_now = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        # The first asks for a graceful stop; any later one passes on a stop at once.
        (stop_now if stop.is_set() else stop).set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    outcome = await processes.run(made, stop=stop, stop_now=stop_now, on_ready=ready_lines(made))
    for line in outcome.lines():
        print(line, flush=True)
    return 0 if outcome.clean else 1
