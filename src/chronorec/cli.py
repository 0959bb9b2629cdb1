"""The ``chronorec`` command: one entry point, one module per subcommand in ``chronorec.commands``.

Each command module defines ``add_parser(subparsers)`` (which registers the subcommand and sets
``func``) and keeps its own logic in the library; this file only dispatches and turns a
:class:`~chronorec.errors.ChronorecError` into a one-line message with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from chronorec import __version__
from chronorec.errors import ChronorecError

COMMAND_MODULES = [
    "chronorec.commands.prepare",
    "chronorec.commands.stats",
    "chronorec.commands.encode_items",
    "chronorec.commands.serve",
    "chronorec.commands.demo",
    "chronorec.commands.report",
    "chronorec.commands.train",
    "chronorec.commands.refit",
    "chronorec.commands.finetune",
    "chronorec.commands.collect",
    "chronorec.commands.evaluate",
    "chronorec.commands.recommend",
    "chronorec.commands.export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chronorec", description="Time-aware sequential recommendation."
    )
    parser.add_argument("--version", action="version", version=f"chronorec {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else 10
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ChronorecError as exc:
        print(f"chronorec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
