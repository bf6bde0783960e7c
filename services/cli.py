"""The ``wxkf`` command: the one module that imports every service.

wxkf run SERVICE...      ingress | router | sender | media | all (in one process)
wxkf up                  every service as its own process, on RabbitMQ and Redis
wxkf demo [--exit]       the whole system on memory:// with the simulator and a script
wxkf sim api|push|load   the WeChat simulator
wxkf rules check|test    validate and try a rules file
wxkf schema              the JSON Schema of every bus message
wxkf config              the reference of every WXKF_ variable
wxkf dlq list|replay|drop  inspect, replay and delete dead letters
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from libs.common.topology import SERVICES

# Each command imports what it drives when it runs, so that ``wxkf`` starts without every
# service loaded; the imports are still plain ones, which import-linter checks.


def _run(args: argparse.Namespace) -> int:
    from services.launcher import run

    return run(args)


def _up(args: argparse.Namespace) -> int:
    from services.up.run import main

    return main(args)


def _demo(args: argparse.Namespace) -> int:
    from services.demo.run import main

    return main(args)


def _config(args: argparse.Namespace) -> int:
    from services.reference import config_main

    return config_main(args)


def _access(args: argparse.Namespace) -> int:
    from libs.common.access import access_main

    return access_main(args)


def _dlq(action: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from libs.common.bus import admin

        command = {"list": admin.list_main, "replay": admin.replay_main, "drop": admin.drop_main}
        return int(asyncio.run(command[action](args)))

    return run


def _schema(args: argparse.Namespace) -> int:
    import msgspec

    from libs.common.schemas import json_schema

    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(json_schema()), indent=2))
    sys.stdout.write("\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wxkf", description="WeChat Mini Program customer service backend."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run services in this process")
    run.add_argument("services", nargs="+", choices=(*SERVICES, "all"), metavar="SERVICE")
    run.set_defaults(func=_run)

    up = sub.add_parser(
        "up",
        help="run every service as its own process on RabbitMQ and Redis, with the simulator",
    )
    up.add_argument(
        "--fresh",
        action="store_true",
        help="start clean: forget wxkf's keys in Redis, the messages of its queues and the "
        "simulator's state (kept between runs otherwise)",
    )
    up.set_defaults(func=_up)

    demo = sub.add_parser("demo", help="play a scripted conversation against the whole system")
    demo.add_argument("--exit", action="store_true", help="stop after the script; 0 if all passed")
    demo.set_defaults(func=_demo)

    sim = sub.add_parser("sim", help="the WeChat simulator (API, pusher, load generator)")
    from services.simulator.cli import add_arguments as add_sim_arguments

    add_sim_arguments(sim)

    rules = sub.add_parser("rules", help="check or try a rules file")
    from services.router.cli import add_arguments as add_rules_arguments

    add_rules_arguments(rules)

    config = sub.add_parser("config", help="print the reference of every WXKF_ variable")
    config.set_defaults(func=_config)

    access = sub.add_parser(
        "access",
        help="print each service's broker permissions and Redis ACL rules (docs/security.md)",
    )
    access.add_argument("--vhost", default="/", help="the broker's vhost (/)")
    access.set_defaults(func=_access)

    schema = sub.add_parser("schema", help="print the JSON Schema of every bus message")
    schema.set_defaults(func=_schema)

    dlq = sub.add_parser(
        "dlq",
        help="list, replay or drop dead letters (WXKF_BUS_URL, else the local broker)",
    )
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dlq_list = dlq_sub.add_parser(
        "list", help="the dead-letter queues and their depths; with a queue, its dead letters"
    )
    dlq_list.add_argument("queue", nargs="?", help="a work queue, e.g. wxkf.sender.commands")
    dlq_list.add_argument("--limit", type=int, default=20, help="dead letters shown (20)")
    dlq_list.set_defaults(func=_dlq("list"))
    dlq_replay = dlq_sub.add_parser("replay", help="send dead letters back to their queue")
    dlq_replay.add_argument("queue", help="a work queue, e.g. wxkf.sender.commands")
    dlq_replay.add_argument("--limit", type=int, default=None, help="at most this many")
    dlq_replay.set_defaults(func=_dlq("replay"))
    dlq_drop = dlq_sub.add_parser("drop", help="delete dead letters, after a confirmation")
    dlq_drop.add_argument("queue", nargs="?", help="a work queue, e.g. wxkf.sender.commands")
    dlq_drop.add_argument("--all", action="store_true", help="every wxkf work queue's")
    dlq_drop.add_argument("--yes", action="store_true", help="do not ask (scripts)")
    dlq_drop.set_defaults(func=_dlq("drop"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
