"""``wxkf demo``: the whole system in one process, playing a scripted conversation.

The four services run on the embedded ``memory://`` bus and store with the shipped rules, the
WeChat simulator serves WeChat's API on its own port, and a script pushes a conversation to
the push URL over real HTTP, as WeChat does, in safe mode. Each step is printed as it
happens and checked against what WeChat delivered and the facts on the bus; then the system
keeps serving until Ctrl-C (or, with ``--exit``, ends with 0 only if every step passed).
"""

from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    # Imported when the command runs, so that ``wxkf`` itself starts without the services.
    from services.demo.run import main as run_main

    return run_main(args)
