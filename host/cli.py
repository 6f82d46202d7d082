"""The ``opu`` command line: one sub-command per host application.

Each module listed in :data:`COMMANDS` exposes ``register(subparsers)`` (adds its parser and sets
``func``) so applications stay independent of each other.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: sub-command modules, in the order ``opu --help`` lists them
COMMANDS = (
    "host.commands.serve",
    "host.commands.train",
    "host.commands.calibrate",
    "host.commands.tm_retrieve",
    "host.commands.sweep",
    "host.commands.frontier",
    "host.commands.privacy_audit",
    "host.commands.robustness",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opu",
        description="Simulator, instrument emulator and host tools for optical processing units.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
