"""Subcommands of ``wxkf`` that belong to this package (filled in by its issue)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(func=lambda args: parser.error("not available yet"))
